"""The sandbox: every OMNI channel, with outcomes decided by rules instead of a real network.

Rules come from the configuration (``[[sandbox.rules]]``); the first that matches a step decides it.
With no rules configured, :data:`DEFAULT_RULES` apply (documented in README.md); a step that no rule
matches is delivered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omnirelay.config import SandboxRule
from omnirelay.connectors.base import Answered, Connector, LaterReport, SubmitResult
from omnirelay.domain import catalogue
from omnirelay.domain.channels import parse_channel
from omnirelay.domain.delivery import Submission
from omnirelay.domain.lifecycle import FINAL_OUTCOMES, Outcome

#: The rules that apply when the configuration declares none: they show failover out of the box.
DEFAULT_RULES: list[SandboxRule] = [
    SandboxRule(channel="WHATSAPP", to=r"\+?[0-9]*7", outcome="REJECTED"),
    SandboxRule(channel="VIBER", to=r"\+?[0-9]*7", outcome="REJECTED"),
    SandboxRule(to=r"\+?[0-9]*1", outcome="UNDELIVERABLE", error="EC_ABSENT_SUBSCRIBER_SM"),
    SandboxRule(to=r"\+?[0-9]*2", outcome="EXPIRED"),
    SandboxRule(channel="WHATSAPP", to=r"\+?[0-9]*3", outcome="SEEN", after_ms=500),
    SandboxRule(channel="EMAIL", to=r"[^@]*bounce[^@]*@.*", outcome="UNDELIVERABLE", error="EC_HARD_BOUNCE"),
]


class RuleError(ValueError):
    """A sandbox rule is invalid; the message names the rule and the field."""


@dataclass(frozen=True)
class _Compiled:
    channel: str | None
    to: re.Pattern[str] | None
    outcome: Outcome
    error: str | None
    after_s: float


def compile_rules(rules: list[SandboxRule]) -> list[_Compiled]:
    """Check and compile rules; RuleError names the first bad one."""
    compiled = []
    for i, rule in enumerate(rules):
        where = f"sandbox.rules[{i}]"
        channel = None
        if rule.channel is not None:
            try:
                channel = parse_channel(rule.channel).value
            except ValueError:
                raise RuleError(f"{where}.channel: unknown channel {rule.channel!r}") from None
        if rule.outcome not in FINAL_OUTCOMES:
            raise RuleError(f"{where}.outcome: must be one of {', '.join(FINAL_OUTCOMES)}")
        if rule.error is not None and not catalogue.is_error_name(rule.error):
            raise RuleError(f"{where}.error: {rule.error!r} is not an error name of the catalogue")
        if rule.after_ms < 0:
            raise RuleError(f"{where}.after_ms: must not be negative")
        try:
            pattern = re.compile(rule.to) if rule.to is not None else None
        except re.error as exc:
            raise RuleError(f"{where}.to: invalid regular expression: {exc}") from None
        compiled.append(_Compiled(channel, pattern, Outcome(rule.outcome), rule.error, rule.after_ms / 1000))
    return compiled


class Sandbox(Connector):
    """A :class:`~omnirelay.connectors.base.Connector` for every OMNI channel, driven by rules."""

    def __init__(self, rules: list[SandboxRule] | None) -> None:
        self.rules = compile_rules(rules if rules else DEFAULT_RULES)

    def outcome(self, channel: str, address: str) -> _Compiled | None:
        """The rule deciding a step, or None (delivered)."""
        for rule in self.rules:
            if rule.channel is not None and rule.channel != channel:
                continue
            if rule.to is not None and rule.to.fullmatch(address) is None:
                continue
            return rule
        return None

    def decide_now(self, submission: Submission) -> SubmitResult:
        """Decide a submission by the rules; an EXPIRED outcome never reports."""
        rule = self.outcome(submission.channel, submission.address)
        provider_id = f"sandbox-{submission.message_id}-{submission.step}"
        if rule is None:
            return SubmitResult(provider_id, [LaterReport(0.0, Outcome.DELIVERED)])
        if rule.outcome == Outcome.EXPIRED:
            return SubmitResult(provider_id)
        not_a_user = rule.outcome == Outcome.REJECTED and submission.channel == "WHATSAPP"
        return SubmitResult(provider_id, [LaterReport(rule.after_s, rule.outcome, rule.error, not_a_user)])

    async def submit(self, batch: list[Submission], answered: Answered | None = None) -> list[SubmitResult]:
        """:meth:`decide_now` for each submission (the engine asks :meth:`decide_now` itself)."""
        results = [self.decide_now(sub) for sub in batch]
        if answered is not None:
            for i, result in enumerate(results):
                answered(i, result)
        return results

    async def close(self) -> None:
        """Nothing to release."""
