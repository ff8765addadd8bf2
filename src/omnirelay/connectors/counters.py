"""The counters a connector declares: named once, registered once per gateway's :class:`~omnirelay.metrics.Metrics`."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import Counter

if TYPE_CHECKING:
    from omnirelay.metrics import Metrics


@dataclass(frozen=True, eq=False)
class CounterSpec:
    """A Prometheus counter of a connector: its name (without ``_total``), help text and labels."""

    name: str
    doc: str
    labels: tuple[str, ...]
    _made: weakref.WeakKeyDictionary[Metrics, Counter] = field(default_factory=weakref.WeakKeyDictionary, repr=False)

    def of(self, metrics: Metrics) -> Counter:
        """The counter in ``metrics``' registry (made there on first use: a connector and its webhook
        receiver, or two connectors of one gateway, share it)."""
        counter = self._made.get(metrics)
        if counter is None:
            counter = self._made[metrics] = Counter(self.name, self.doc, list(self.labels), registry=metrics.registry)
        return counter
