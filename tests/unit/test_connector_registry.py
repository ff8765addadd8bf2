"""The connector registry: what each connector package declares is what it builds, registers and routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from omnirelay.config import (
    LineChannelConfig,
    LineConfig,
    MessengerConfig,
    MessengerPageConfig,
    PushAppConfig,
    PushConfig,
    Settings,
    SmppConfig,
    SmppConnectorConfig,
    SmtpConfig,
    SmtpServerConfig,
    ViberBotConfig,
    ViberConfig,
    WhatsAppConfig,
    WhatsAppSenderConfig,
)
from omnirelay.connectors.registry import Wiring, registry
from omnirelay.domain.channels import Channel
from omnirelay.metrics import Metrics


async def _nowhere(_items: list[Any]) -> None:
    raise AssertionError("nothing is received while building")


def every_connector(tmp_path: Path) -> Settings:
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"type": "service_account", "client_email": "a@p.iam", "private_key": "unused"}))
    return Settings(
        smpp=SmppConfig(connectors=[SmppConnectorConfig(name="smsc", system_id="id", password="pw")]),
        whatsapp=WhatsAppConfig(
            [WhatsAppSenderConfig(sender="44", phone_number_id="1", access_token="t", app_secret="s", verify_token="v")]
        ),
        smtp=SmtpConfig(servers=[SmtpServerConfig(host="127.0.0.1")]),
        viber=ViberConfig([ViberBotConfig(sender="Shop", auth_token="t", sender_name="Shop")]),
        push=PushConfig([PushAppConfig(sender="app", service_account_file=str(key), project_id="p")]),
        messenger=MessengerConfig(
            [MessengerPageConfig(sender="Page", page_id="1", page_access_token="t", app_secret="s", verify_token="v")]
        ),
        line=LineConfig([LineChannelConfig(sender="Shop", channel_access_token="t", channel_secret="s")]),
    )


def families(metrics: Metrics) -> set[str]:
    return {family.name for family in metrics.registry.collect()}


async def test_each_connector_builds_registers_its_declared_metrics_and_routes(tmp_path: Path) -> None:
    settings = every_connector(tmp_path)
    metrics = Metrics()
    before = families(metrics)
    wiring = Wiring(object(), metrics, _nowhere, _nowhere, settings.accounts)  # type: ignore[arg-type]
    app = web.Application()
    built = []
    for spec in registry():
        section = spec.section(settings)
        assert spec.configured(section), spec.name
        connector = spec.build(section, wiring)
        built.append(connector)
        if spec.routes is not None:
            spec.routes(section, wiring).add_to(app)
    added = families(metrics) - before
    declared = {name for spec in registry() for name in spec.metrics}
    assert added == declared  # every metric declared is registered, and none is registered undeclared
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    assert routes == {
        ("GET", "/webhooks/whatsapp/{sender}"),
        ("HEAD", "/webhooks/whatsapp/{sender}"),
        ("POST", "/webhooks/whatsapp/{sender}"),
        ("POST", "/webhooks/viber/{sender}"),
        ("GET", "/webhooks/messenger/{sender}"),
        ("HEAD", "/webhooks/messenger/{sender}"),
        ("POST", "/webhooks/messenger/{sender}"),
        ("POST", "/webhooks/line/{sender}"),
    }
    for connector in built:
        await connector.close()


def test_each_connector_serves_its_own_channel_and_section() -> None:
    specs = registry()
    channels = [spec.channel for spec in specs]
    assert len(set(channels)) == len(channels)
    assert set(channels) <= {c.value for c in Channel}
    assert {spec.name for spec in specs} <= set(Settings.__struct_fields__)


def test_nothing_is_configured_by_default() -> None:
    settings = Settings()
    assert [spec.name for spec in registry() if spec.configured(spec.section(settings))] == []


def test_a_settings_error_names_its_section(tmp_path: Path) -> None:
    from omnirelay.app import Gateway
    from omnirelay.config import ConfigError

    settings = Settings(push=PushConfig([PushAppConfig(sender="app", service_account_file=str(tmp_path / "none"))]))
    with pytest.raises(ConfigError, match=r"^push: service account key .* does not exist"):
        Gateway(settings, object())  # type: ignore[arg-type]
