"""Settings: a TOML file (``--config`` or ``OMNIRELAY_CONFIG``), then environment variables, then flags.

Every setting, its default and its environment variable are documented in README.md ("Configuration").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from omnirelay.domain.validation import URL


class AccountConfig(msgspec.Struct, forbid_unknown_fields=True):
    """An account declared in the config file."""

    username: str
    password: str | None = None
    password_hash: str | None = None
    api_keys: list[str] = msgspec.field(default_factory=list)
    webhook_secret: str | None = None
    inbound_url: str | None = None
    """Where messages that users send to this account's senders (WhatsApp inbound, SMS to ``inbound_numbers``) are
    pushed."""
    notify_url: str | None = None
    """Where the reports of this account's requests without ``notifyUrl`` are pushed (unless ``notify`` is false)."""
    inbound_numbers: list[str] = msgspec.field(default_factory=list)
    """Numbers (digits, ``+`` optional) whose inbound SMS belong to this account; pushed to ``inbound_url``."""
    inbound_keywords: list[str] = msgspec.field(default_factory=list)
    """First words of an inbound SMS given apart as its ``keyword`` (the rest is its ``cleanText``)."""


class SandboxRule(msgspec.Struct, forbid_unknown_fields=True):
    """One sandbox rule: the first rule that matches a step decides its outcome."""

    outcome: Literal["DELIVERED", "SEEN", "UNDELIVERABLE", "REJECTED", "EXPIRED"]
    channel: str | None = None
    to: str | None = None
    error: str | None = None
    after_ms: int = 0


class SandboxConfig(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[SandboxRule] | None = None


class LimitsConfig(msgspec.Struct, forbid_unknown_fields=True):
    min_validity_seconds: float = 30.0
    max_destinations: int = 10_000
    max_body_mb: float = 16.0
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0
    keepalive_seconds: float = 75.0
    max_connections_per_client: int = 256
    min_free_disk_mb: float = 64.0


class CapabilityConfig(msgspec.Struct, forbid_unknown_fields=True):
    not_whatsapp_days: float = 7.0


class WebhookConfig(msgspec.Struct, forbid_unknown_fields=True):
    max_attempts: int = 10
    timeout_seconds: float = 10.0
    retry_base_seconds: float = 60.0


class PriceConfig(msgspec.Struct, forbid_unknown_fields=True):
    price: float
    channel: str | None = None
    country: str | None = None


class PricingConfig(msgspec.Struct, forbid_unknown_fields=True):
    currency: str = "EUR"
    default: float = 0.0
    prices: list[PriceConfig] = msgspec.field(default_factory=list)


class MccMncConfig(msgspec.Struct, forbid_unknown_fields=True):
    prefixes: dict[str, str] = msgspec.field(default_factory=dict)


class EngineConfig(msgspec.Struct, forbid_unknown_fields=True):
    batch_size: int = 500
    retention_hours: float = 48.0


class SmppConnectorConfig(msgspec.Struct, forbid_unknown_fields=True):
    """One SMPP 3.4 bind to an SMS centre."""

    name: str
    system_id: str
    password: str
    host: str = "127.0.0.1"
    port: int = 2775
    system_type: str = ""
    bind_mode: Literal["transceiver", "transmitter"] = "transceiver"
    window_size: int = 10
    max_submits_per_second: float | None = None
    """Cap on submit_sm PDUs a second, shared by every worker process using this connector."""
    gsm7_data_coding: int = 0
    """data_coding for GSM-7 text (0 = SMSC default alphabet; some SMSCs want 241)."""
    enquire_link_seconds: float = 30.0
    response_timeout_seconds: float = 30.0
    reconnect_max_seconds: float = 30.0


class SmppRoute(msgspec.Struct, forbid_unknown_fields=True):
    """Destinations starting with ``prefix`` (digits, no ``+``) go through ``connector``."""

    prefix: str
    connector: str


class SmppConfig(msgspec.Struct, forbid_unknown_fields=True):
    """SMS over SMPP: with connectors declared, SMS steps leave through them instead of the sandbox."""

    connectors: list[SmppConnectorConfig] = msgspec.field(default_factory=list)
    routes: list[SmppRoute] = msgspec.field(default_factory=list)
    default_connector: str | None = None
    """The connector for destinations no route matches; the first connector when unset."""
    inbound_dedupe_seconds: Annotated[float, msgspec.Meta(ge=0)] = 600.0
    """An inbound SMS part seen again within this long (same connector, sender, number, reference, part and
    text) is taken for the SMSC's resend and dropped."""
    inbound_part_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    """How long the parts of a long inbound SMS wait for the rest; then what arrived is delivered as it is."""


class WhatsAppSenderConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A WhatsApp Business phone number on the Cloud API; a step whose ``from`` is ``sender`` uses it."""

    sender: str
    phone_number_id: str
    access_token: str
    app_secret: str
    verify_token: str
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v23.0"
    account: str | None = None
    """The account (username) that receives this number's inbound messages."""


class WhatsAppConfig(msgspec.Struct, forbid_unknown_fields=True):
    """WhatsApp over Meta's Cloud API: with senders declared, WhatsApp steps leave through it."""

    senders: list[WhatsAppSenderConfig] = msgspec.field(default_factory=list)


class ViberBotConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A Viber bot on Viber's REST bot API; a step whose ``from`` is ``sender`` uses it."""

    sender: str
    auth_token: str
    """The bot's token: authenticates sends (``X-Viber-Auth-Token``) and keys the callbacks' signature."""
    sender_name: str
    """The name users see (at most 28 characters)."""
    avatar: str | None = None
    base_url: str = "https://chatapi.viber.com"
    users: dict[str, str] = msgspec.field(default_factory=dict)
    """Phone number (international digits) -> the Viber user id the bot API addresses (from its callbacks)."""
    users_file: str | None = None
    """A JSON object of more phone number -> user id pairs, read when the connector starts."""


class ViberConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Viber over the REST bot API: with bots declared, Viber steps leave through it."""

    bots: list[ViberBotConfig] = msgspec.field(default_factory=list)


class PushAppConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A Firebase project reached through FCM HTTP v1; a push step whose ``from`` is ``sender`` uses it."""

    sender: str
    service_account_file: str
    """The service account's JSON key (from the Firebase console); it signs the OAuth2 token requests."""
    project_id: str | None = None
    """The Firebase project; the key file's ``project_id`` when unset."""
    base_url: str = "https://fcm.googleapis.com"
    token_url: str | None = None
    """Where access tokens are asked for; the key file's ``token_uri`` when unset."""


class PushConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Push notifications over Firebase Cloud Messaging: with apps declared, push steps leave through it."""

    apps: list[PushAppConfig] = msgspec.field(default_factory=list)
class MessengerPageConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A Facebook Page that sends over the Messenger Platform; a FACEBOOK step whose ``from`` is ``sender`` uses it."""

    sender: str
    page_id: str
    page_access_token: str
    app_secret: str
    """The Meta app's secret: verifies the ``X-Hub-Signature-256`` of this page's webhooks."""
    verify_token: str
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v23.0"
    message_tag: str | None = None
    """Send as ``MESSAGE_TAG`` with this tag (e.g. ``ACCOUNT_UPDATE``) instead of ``UPDATE``: Messenger takes
    ``UPDATE`` only within 24 hours of the user's last message."""
    account: str | None = None
    """The account (username) that receives this page's inbound messages."""


class MessengerConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Facebook Messenger over the Graph API's Send API: with pages declared, FACEBOOK steps leave through it."""

    pages: list[MessengerPageConfig] = msgspec.field(default_factory=list)


class LineChannelConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A LINE Official Account's Messaging API channel; a LINE step whose ``from`` is ``sender`` uses it."""

    sender: str
    channel_access_token: str
    channel_secret: str
    """Verifies the ``X-Line-Signature`` of this channel's webhooks."""
    base_url: str = "https://api.line.me"
    account: str | None = None
    """The account (username) that receives this channel's inbound messages."""


class LineConfig(msgspec.Struct, forbid_unknown_fields=True):
    """LINE over the Messaging API (push messages): with channels declared, LINE steps leave through it."""

    channels: list[LineChannelConfig] = msgspec.field(default_factory=list)


class SmtpServerConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A mail server that e-mail steps are handed to."""

    host: str
    port: int = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 30.0
    from_domains: list[str] = msgspec.field(default_factory=list)
    """Sender domains this server takes; the first server takes the rest."""


class SmtpConfig(msgspec.Struct, forbid_unknown_fields=True):
    """E-mail over SMTP: with servers declared, e-mail steps leave through them instead of the sandbox."""

    servers: list[SmtpServerConfig] = msgspec.field(default_factory=list)
    retry_seconds: float = 60.0
    """Wait before retrying after a 4xx answer (doubling each time, within the step's validity)."""


class AuthConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Sessions (``POST /auth/1/session``, ``Authorization: IBSSO``) and OAuth2 tokens (``Authorization: Bearer``)."""

    session_idle_minutes: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """A session ends this long after its last use (Infobip: 60 minutes)."""
    oauth_token_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    """The lifetime of an OAuth2 access token (its ``expires_in``)."""


RateRoute = Annotated[str, msgspec.Meta(pattern=r"^(GET|POST|PUT|DELETE|PATCH) /\S*$")]
"""An endpoint as ``METHOD /path``, the path as routed (``PUT /omni/1/scenarios/{key}``)."""
RateText = Annotated[str, msgspec.Meta(pattern=r"^(off|[1-9][0-9]*/([0-9]+(\.[0-9]+)?)?[smh])$")]
"""``N/period``: N requests per period (``10m``, ``1s``, ``2h``; ``m`` alone is one minute), or ``off``."""


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    """All settings of a gateway."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./omnirelay-data"
    database: str | None = None
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    single_process: bool = False
    """``omnirelay serve`` on SQLite runs the API and the engine in one process instead of two."""
    console_secret: str | None = None
    """No longer used (console sessions are kept in the database, so every process knows them); still accepted so
    that config files written for earlier versions load."""
    accounts: list[AccountConfig] = msgspec.field(default_factory=list)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    sandbox: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    capability: CapabilityConfig = msgspec.field(default_factory=CapabilityConfig)
    webhooks: WebhookConfig = msgspec.field(default_factory=WebhookConfig)
    pricing: PricingConfig = msgspec.field(default_factory=PricingConfig)
    mcc_mnc: MccMncConfig = msgspec.field(default_factory=MccMncConfig)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)
    smpp: SmppConfig = msgspec.field(default_factory=SmppConfig)
    whatsapp: WhatsAppConfig = msgspec.field(default_factory=WhatsAppConfig)
    smtp: SmtpConfig = msgspec.field(default_factory=SmtpConfig)
    viber: ViberConfig = msgspec.field(default_factory=ViberConfig)
    push: PushConfig = msgspec.field(default_factory=PushConfig)
    messenger: MessengerConfig = msgspec.field(default_factory=MessengerConfig)
    line: LineConfig = msgspec.field(default_factory=LineConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    rate_limits: dict[RateRoute, RateText] = msgspec.field(default_factory=dict)
    """Per account and endpoint, over the defaults in :mod:`omnirelay.api.ratelimit`."""

    def sqlite_path(self) -> Path:
        """The SQLite file: ``database`` when it names one, else ``omnirelay.db`` in the data folder."""
        db = self.database
        if db:
            if db.startswith("sqlite:///"):
                return Path(db[len("sqlite:///") :])
            if db.startswith("sqlite://"):
                return Path(db[len("sqlite://") :])
            if "://" not in db:
                return Path(db)
            raise ConfigError(f"database: unsupported URL {db!r} (use sqlite:///path or postgresql://...)")
        return Path(self.data_dir) / "omnirelay.db"


class ConfigError(Exception):
    """The configuration is invalid; the message says where."""


#: Environment variables and the top-level settings they set.
ENV_VARS = {
    "OMNIRELAY_HOST": "host",
    "OMNIRELAY_PORT": "port",
    "OMNIRELAY_DATA_DIR": "data_dir",
    "OMNIRELAY_DATABASE": "database",
    "OMNIRELAY_LOG_LEVEL": "log_level",
    "OMNIRELAY_LOG_FORMAT": "log_format",
    "OMNIRELAY_SINGLE_PROCESS": "single_process",
}


def load(
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Read the settings: file, then environment, then ``overrides`` (the command-line flags that were given)."""
    env = os.environ if environ is None else environ
    path = config_file or env.get("OMNIRELAY_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = msgspec.toml.decode(Path(path).read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except msgspec.DecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
    for var, key in ENV_VARS.items():
        if env.get(var):
            raw[key] = env[var]
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path or 'settings'}: {exc}") from exc
    for account in settings.accounts:
        if account.password is None and account.password_hash is None and not account.api_keys:
            raise ConfigError(f"account {account.username!r} needs a password, a password_hash or api_keys")
        if account.notify_url is not None and not URL.match(account.notify_url):
            raise ConfigError(f"account {account.username!r}: notify_url must be an http(s) URL")
    owners: dict[str, str] = {}
    for account in settings.accounts:
        for number in account.inbound_numbers:
            digits = number.strip().lstrip("+")
            if not (digits.isascii() and digits.isalnum()):
                raise ConfigError(f"account {account.username!r}: inbound number {number!r} is not a number")
            if owners.setdefault(digits, account.username) != account.username:
                others = f"{owners[digits]!r} and {account.username!r}"
                raise ConfigError(f"inbound number {number!r} is declared by two accounts: {others}")
    return settings
