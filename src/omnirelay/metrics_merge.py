"""One ``/metrics`` answer for two processes: the API's own metrics and the engine process's, merged by family.

Used by ``omnirelay serve`` on SQLite, whose API and engine run in two processes behind one port. A family both
processes have is written once: counters and histograms add up (each process counts what it did), a
``_created`` time is the earlier one, and any other gauge is the engine's (the queue depth and job lag, which
both read from the same database, and the connectors' gauges).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

_Key = tuple[str, tuple[tuple[str, str], ...]]


def merge(own: bytes, peer: bytes) -> bytes:
    """The text exposition of ``own`` and ``peer`` (both text expositions) as one."""
    families: dict[str, Metric] = {}
    for family in _parse(own):
        families[family.name] = family
    for family in _parse(peer):
        mine = families.get(family.name)
        if mine is None:
            families[family.name] = family
        else:
            families[family.name] = _combine(mine, family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


def _parse(text: bytes) -> Iterable[Metric]:
    return text_string_to_metric_families(text.decode("utf-8", "replace"))


def _key(sample: Sample) -> _Key:
    return sample.name, tuple(sorted(sample.labels.items()))


def _combine(own: Metric, peer: Metric) -> Metric:
    merged: dict[_Key, Sample] = {_key(s): s for s in own.samples}
    for sample in peer.samples:
        key = _key(sample)
        mine = merged.get(key)
        if mine is None or (own.type == "gauge" and not sample.name.endswith("_created")):
            merged[key] = sample
        elif sample.name.endswith("_created"):
            merged[key] = mine._replace(value=min(mine.value, sample.value))
        else:
            merged[key] = mine._replace(value=mine.value + sample.value)
    family = Metric(own.name, own.documentation or peer.documentation, own.type)
    family.samples = list(merged.values())
    return family


class _Fixed:
    """A collector that yields the families it was given."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families
