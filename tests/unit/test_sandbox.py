"""Tests for the sandbox channel (omnirelay.connectors.sandbox.connector): rules, defaults, submission counting."""

from __future__ import annotations

import pytest

from omnirelay.config import SandboxRule
from omnirelay.connectors.base import LaterReport, SubmitResult
from omnirelay.connectors.sandbox.connector import DEFAULT_RULES, RuleError, Sandbox, compile_rules
from omnirelay.domain.delivery import Submission


def sub(channel: str, address: str, message_id: str = "m1", step: int = 0) -> Submission:
    return Submission(
        message=1,
        step=step,
        account_id=1,
        message_id=message_id,
        channel=channel,
        sender=None,
        address=address,
        content={"text": "hi"},
        validity_s=60.0,
    )


async def one(sandbox: Sandbox, channel: str, address: str) -> SubmitResult:
    [result] = await sandbox.submit([sub(channel, address)])
    return result


# --- compile_rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (SandboxRule(outcome="DELIVERED", channel="PIGEON"), "sandbox.rules[1].channel"),
        (SandboxRule(outcome="UNDELIVERABLE", error="EC_NO_SUCH_ERROR"), "sandbox.rules[1].error"),
        (SandboxRule(outcome="DELIVERED", to="(unclosed"), "sandbox.rules[1].to"),
        (SandboxRule(outcome="DELIVERED", after_ms=-1), "sandbox.rules[1].after_ms"),
        (SandboxRule(outcome="LOST"), "sandbox.rules[1].outcome"),  # type: ignore[arg-type]
    ],
)
def test_compile_errors_name_the_field(rule: SandboxRule, field: str) -> None:
    good = SandboxRule(outcome="DELIVERED")
    with pytest.raises(RuleError) as info:
        compile_rules([good, rule])
    assert str(info.value).startswith(field + ":"), str(info.value)


def test_compile_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        compile_rules([SandboxRule(outcome="DELIVERED", channel="PIGEON")])


def test_compile_accepts_alias_and_catalogue_error() -> None:
    [rule] = compile_rules(
        [SandboxRule(outcome="UNDELIVERABLE", channel="VK", error="EC_ABSENT_SUBSCRIBER_SM", after_ms=250)]
    )
    assert rule.channel == "VKONTAKTE"
    assert rule.error == "EC_ABSENT_SUBSCRIBER_SM"
    assert rule.after_s == 0.25


def test_default_rules_compile() -> None:
    assert len(compile_rules(DEFAULT_RULES)) == len(DEFAULT_RULES)


# --- matching -------------------------------------------------------------------------------------


async def test_first_matching_rule_wins() -> None:
    sandbox = Sandbox(
        [
            SandboxRule(outcome="UNDELIVERABLE", channel="SMS", to=r"4179.*"),
            SandboxRule(outcome="REJECTED", to=r"41.*"),
            SandboxRule(outcome="SEEN"),
        ]
    )
    assert (await one(sandbox, "SMS", "41790000000")).reports[0].outcome == "UNDELIVERABLE"
    assert (await one(sandbox, "VIBER", "41790000000")).reports[0].outcome == "REJECTED"
    assert (await one(sandbox, "SMS", "41990000000")).reports[0].outcome == "REJECTED"
    assert (await one(sandbox, "SMS", "38590000000")).reports[0].outcome == "SEEN"


async def test_to_must_match_whole_address() -> None:
    sandbox = Sandbox([SandboxRule(outcome="REJECTED", to="123")])
    assert sandbox.outcome("SMS", "123") is not None
    assert sandbox.outcome("SMS", "41123") is None
    assert sandbox.outcome("SMS", "1234") is None
    assert (await one(sandbox, "SMS", "1234")).reports == [LaterReport(0.0, "DELIVERED")]


def test_rule_channel_restricts_match() -> None:
    sandbox = Sandbox([SandboxRule(outcome="REJECTED", channel="WHATSAPP")])
    assert sandbox.outcome("WHATSAPP", "1") is not None
    assert sandbox.outcome("SMS", "1") is None


async def test_unmatched_step_is_delivered() -> None:
    sandbox = Sandbox([SandboxRule(outcome="REJECTED", channel="EMAIL")])
    result = await one(sandbox, "SMS", "41793026720")
    assert result.reports == [LaterReport(0.0, "DELIVERED")]
    assert result.provider_id == "sandbox-m1-0"


async def test_rule_error_and_delay_are_reported() -> None:
    sandbox = Sandbox([SandboxRule(outcome="UNDELIVERABLE", error="EC_ABSENT_SUBSCRIBER_SM", after_ms=1500)])
    result = await one(sandbox, "SMS", "41793026720")
    assert result.reports == [LaterReport(1.5, "UNDELIVERABLE", "EC_ABSENT_SUBSCRIBER_SM", False)]


async def test_empty_rule_list_means_defaults() -> None:
    sandbox = Sandbox([])
    assert (await one(sandbox, "WHATSAPP", "41793026727")).reports[0].outcome == "REJECTED"
    sandbox = Sandbox(None)
    assert (await one(sandbox, "WHATSAPP", "41793026727")).reports[0].outcome == "REJECTED"


# --- the default rules ----------------------------------------------------------------------------


@pytest.fixture
def default() -> Sandbox:
    return Sandbox(None)


@pytest.mark.parametrize("address", ["41793026727", "+41793026727", "7"])
async def test_default_whatsapp_ending_7_is_not_a_user(default: Sandbox, address: str) -> None:
    result = await one(default, "WHATSAPP", address)
    assert result.reports == [LaterReport(0.0, "REJECTED", None, True)]


async def test_default_viber_ending_7_is_rejected(default: Sandbox) -> None:
    [report] = (await one(default, "VIBER", "41793026727")).reports
    assert report.outcome == "REJECTED"
    assert report.not_a_user is False  # only WhatsApp's rejection means "not a user"


async def test_default_sms_ending_7_is_delivered(default: Sandbox) -> None:
    assert (await one(default, "SMS", "41793026727")).reports == [LaterReport(0.0, "DELIVERED")]


@pytest.mark.parametrize("channel", ["WHATSAPP", "SMS", "VIBER"])
async def test_default_ending_1_is_undeliverable(default: Sandbox, channel: str) -> None:
    [report] = (await one(default, channel, "+41793026721")).reports
    assert report.outcome == "UNDELIVERABLE"
    assert report.error == "EC_ABSENT_SUBSCRIBER_SM"
    assert report.not_a_user is False


@pytest.mark.parametrize("channel", ["WHATSAPP", "SMS", "VIBER"])
async def test_default_ending_2_expires_without_report(default: Sandbox, channel: str) -> None:
    result = await one(default, channel, "41793026722")
    assert result.reports == []
    assert result.provider_id == "sandbox-m1-0"


async def test_default_whatsapp_ending_3_is_seen_after_half_a_second(default: Sandbox) -> None:
    assert (await one(default, "WHATSAPP", "41793026723")).reports == [LaterReport(0.5, "SEEN", None, False)]


async def test_default_sms_ending_3_is_delivered(default: Sandbox) -> None:
    assert (await one(default, "SMS", "41793026723")).reports == [LaterReport(0.0, "DELIVERED")]


@pytest.mark.parametrize(
    ("channel", "address"),
    [
        ("WHATSAPP", "41793026720"),
        ("WHATSAPP", "41793026775"),  # contains a 7 but does not end in one
        ("SMS", "41793026729"),
        ("VIBER", "41793026724"),
        ("EMAIL", "jane@example.com"),
        ("EMAIL", "jane1@example.com"),
    ],
)
async def test_default_others_delivered(default: Sandbox, channel: str, address: str) -> None:
    assert (await one(default, channel, address)).reports == [LaterReport(0.0, "DELIVERED")]


async def test_default_email_bounce(default: Sandbox) -> None:
    [report] = (await one(default, "EMAIL", "bounce@example.com")).reports
    assert (report.outcome, report.error) == ("UNDELIVERABLE", "EC_HARD_BOUNCE")


# --- submissions ----------------------------------------------------------------------------------


async def test_batch_results_in_order(default: Sandbox) -> None:
    results = await default.submit(
        [
            sub("WHATSAPP", "41793026727", "a"),
            sub("SMS", "41793026722", "b"),
            sub("SMS", "41793026720", "c", step=1),
        ]
    )
    assert [r.provider_id for r in results] == ["sandbox-a-0", "sandbox-b-0", "sandbox-c-1"]
    assert [[x.outcome for x in r.reports] for r in results] == [["REJECTED"], [], ["DELIVERED"]]



async def test_close_is_harmless(default: Sandbox) -> None:
    await default.close()
