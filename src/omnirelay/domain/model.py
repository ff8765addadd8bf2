"""The OMNI API's wire types: what clients send and what they get back.

These msgspec Structs both validate requests (types, enums) and generate the OpenAPI document; the
rules that types cannot express live in :mod:`omnirelay.domain.validation`. Every optional field also
accepts ``null``, because the old official clients send unset fields as ``null``.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from omnirelay.domain.catalogue import Error, Status

InputChannel = enum.Enum(  # type: ignore[misc]
    "InputChannel",
    {
        name: name
        for name in (
            "SMS",
            "EMAIL",
            "VOICE",
            "PUSH",
            "VIBER",
            "LINE",
            "VKONTAKTE",
            "KAKAO_CHINGU",
            "KAKAO_ALIM",
            "WHATSAPP",
            "FACEBOOK",
            "PARSECO",
            "VK",
        )
    },
    type=str,
)
"""Channel names accepted on input: the OMNI enum, legacy values and the alias ``VK``."""


class TimeUnit(enum.StrEnum):
    """Unit of ``validityPeriod``."""

    NANOSECONDS = "NANOSECONDS"
    MICROSECONDS = "MICROSECONDS"
    MILLISECONDS = "MILLISECONDS"
    SECONDS = "SECONDS"
    MINUTES = "MINUTES"
    HOURS = "HOURS"
    DAYS = "DAYS"


UNIT_SECONDS: dict[TimeUnit, float] = {
    TimeUnit.NANOSECONDS: 1e-9,
    TimeUnit.MICROSECONDS: 1e-6,
    TimeUnit.MILLISECONDS: 1e-3,
    TimeUnit.SECONDS: 1.0,
    TimeUnit.MINUTES: 60.0,
    TimeUnit.HOURS: 3600.0,
    TimeUnit.DAYS: 86400.0,
}


class Base(msgspec.Struct, omit_defaults=True):
    """Common base: unknown fields are ignored (clients send extras such as ``"key": null``)."""


# --- scenarios ---------------------------------------------------------------------------------


class StepIn(Base):
    """One step of a scenario's flow, as sent."""

    channel: InputChannel
    from_: str | None = msgspec.field(default=None, name="from")


class ScenarioIn(Base):
    """Body of POST and PUT ``/omni/1/scenarios``: ``default`` and ``defaultScenario`` both accepted."""

    flow: Annotated[list[StepIn], Meta(min_length=1)]
    name: str | None = None
    default: bool | None = None
    defaultScenario: bool | None = None


class Step(Base, kw_only=True):
    """One step of a stored scenario's flow."""

    from_: str | None = msgspec.field(default=None, name="from")
    channel: str


class Scenario(msgspec.Struct):
    """A scenario as returned: the default flag under both names, ``default`` as Infobip documents it and
    ``defaultScenario`` as the old official clients (Java, PHP, C#, Python 2.x) read it."""

    key: str
    name: str
    flow: list[Step]
    default: bool
    defaultScenario: bool


class ScenarioList(msgspec.Struct):
    """Answer of GET ``/omni/1/scenarios``."""

    scenarios: list[Scenario]


# --- sending -----------------------------------------------------------------------------------


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


class ChannelData(Base):
    """Fields every channel object has."""

    text: str | None = None
    validityPeriod: Annotated[int, Meta(ge=0, le=INT32_MAX)] | None = None
    validityPeriodTimeUnit: TimeUnit | None = None


class LanguageCode(enum.StrEnum):
    """``sms.language.languageCode``: the national language tables a GSM-7 SMS may use."""

    NONE = "NONE"
    TR = "TR"
    ES = "ES"
    PT = "PT"
    AUTODETECT = "AUTODETECT"


class Transliteration(enum.StrEnum):
    """``sms.transliteration``: which characters are replaced by GSM-7 ones before sending."""

    NONE = "NONE"
    ALL = "ALL"
    BALTIC = "BALTIC"
    CENTRAL_EUROPEAN = "CENTRAL_EUROPEAN"
    COLOMBIAN = "COLOMBIAN"
    CYRILLIC = "CYRILLIC"
    GREEK = "GREEK"
    NON_UNICODE = "NON_UNICODE"
    PORTUGUESE = "PORTUGUESE"
    SERBIAN_CYRILLIC = "SERBIAN_CYRILLIC"
    TURKISH = "TURKISH"
    BULGARIAN_CYRILLIC = "BULGARIAN_CYRILLIC"


class SmsLanguage(Base):
    """``sms.language``; ``singleShift`` / ``lockingShift`` false (legacy clients) rule out that kind of table."""

    languageCode: LanguageCode | None = None
    singleShift: bool | None = None
    lockingShift: bool | None = None


class SmsData(ChannelData):
    """The ``sms`` object."""

    transliteration: Transliteration | None = None
    language: SmsLanguage | None = None
    regional: dict[str, Any] | None = None


class MediaTemplateHeader(Base):
    textPlaceholder: str | None = None
    documentUrl: str | None = None
    documentFilename: str | None = None
    imageUrl: str | None = None
    videoUrl: str | None = None
    latitude: Annotated[float, Meta(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Meta(ge=-180, le=180)] | None = None


class MediaTemplateBody(Base):
    placeholders: list[str] | None = None


class MediaTemplateButton(Base):
    urlPlaceholder: Annotated[str, Meta(max_length=1500)] | None = None
    quickReplyPayload: Annotated[str, Meta(max_length=128)] | None = None


class MediaTemplateData(Base):
    header: MediaTemplateHeader | None = None
    body: MediaTemplateBody | None = None
    buttons: list[MediaTemplateButton] | None = None


class WhatsAppContact(Base):
    """A contact card; the sub-objects are passed through to the channel as sent."""

    name: dict[str, Any] | None = None
    addresses: list[dict[str, Any]] | None = None
    birthday: str | None = None
    emails: list[dict[str, Any]] | None = None
    org: dict[str, Any] | None = None
    phones: list[dict[str, Any]] | None = None
    urls: list[dict[str, Any]] | None = None


Url = Annotated[str, Meta(max_length=2048)]
Text1000 = Annotated[str, Meta(max_length=1000)]


class WhatsAppData(ChannelData):
    """The ``whatsApp`` object: text, media, location, contacts or a template."""

    templateNamespace: str | None = None
    templateName: str | None = None
    templateData: list[str] | None = None
    mediaTemplateData: MediaTemplateData | None = None
    language: str | None = None
    policy: str | None = None
    fileUrl: Url | None = None
    imageUrl: Url | None = None
    audioUrl: Url | None = None
    videoUrl: Url | None = None
    locationName: Text1000 | None = None
    address: Text1000 | None = None
    longitude: Annotated[float, Meta(ge=-180, le=180)] | None = None
    latitude: Annotated[float, Meta(ge=-90, le=90)] | None = None
    previewUrl: bool | None = None
    contacts: list[WhatsAppContact] | None = None


class ViberData(ChannelData):
    """The ``viber`` object."""

    imageURL: Text1000 | None = None
    fileName: Annotated[str, Meta(max_length=25)] | None = None
    fileType: str | None = None
    fileUrl: str | None = None
    buttonText: Annotated[str, Meta(max_length=30)] | None = None
    buttonURL: Text1000 | None = None
    trackingData: Annotated[str, Meta(max_length=100)] | None = None
    isPromotional: bool | None = None
    forcePrimaryDevice: bool | None = None


class VoiceData(ChannelData):
    """The ``voice`` object."""

    language: str | None = None


class EmailData(ChannelData):
    """The ``email`` object."""

    subject: str | None = None


class PushData(ChannelData):
    """The ``push`` object."""

    customPayload: dict[str, Any] | None = None
    notificationOptions: dict[str, Any] | None = None
    targetOnlyPrimaryDevices: bool | None = None
    includeNotificationsDisabledDevices: bool | None = None
    personSubscriptions: list[Any] | None = None
    deviceSubscriptions: list[Any] | None = None


class LineType(enum.StrEnum):
    TEXT = "TEXT"
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    AUDIO = "AUDIO"
    STICKER = "STICKER"
    FLEX = "FLEX"


class LineData(ChannelData):
    """The ``line`` object."""

    type: LineType | None = None
    url: Text1000 | None = None
    thumbnailUrl: Text1000 | None = None
    duration: Annotated[int, Meta(ge=0, le=INT64_MAX)] | str | None = None
    packageId: str | None = None
    stickerId: str | None = None
    altText: Annotated[str, Meta(max_length=400)] | None = None
    contents: dict[str, Any] | None = None


class VKontakteData(ChannelData):
    """The ``vKontakte`` object."""

    templateName: str | None = None
    templateData: dict[str, Any] | None = None


class KakaoButton(Base):
    buttonText: Annotated[str, Meta(min_length=1, max_length=28)] | None = None
    type: str | None = None
    buttonUrl: Annotated[str, Meta(max_length=500)] | None = None
    buttonUrlMobile: Annotated[str, Meta(max_length=500)] | None = None
    buttonUrlPc: Annotated[str, Meta(max_length=500)] | None = None
    target: str | None = None
    androidScheme: str | None = None
    iosScheme: str | None = None
    chatExtra: str | None = None
    chatEvent: Annotated[str, Meta(max_length=50)] | None = None


class KakaoAlimData(ChannelData):
    """The ``kakaoAlim`` object."""

    templateCode: Annotated[str, Meta(min_length=1, max_length=30)] | None = None
    title: Annotated[str, Meta(max_length=50)] | None = None
    groupKey: str | None = None
    buttons: Annotated[list[KakaoButton], Meta(max_length=5)] | None = None


class KakaoChinguData(ChannelData):
    """The ``kakaoChingu`` object."""

    imageUrl: Annotated[str, Meta(max_length=250)] | None = None
    imageLink: Annotated[str, Meta(max_length=250)] | None = None
    isPromotional: bool | None = None
    buttons: Annotated[list[KakaoButton], Meta(max_length=5)] | None = None


class FacebookData(ChannelData):
    """The legacy ``facebook`` object."""

    type: str | None = None
    url: str | None = None


class To(Base):
    """A destination's addresses; which one is used depends on the step's channel."""

    phoneNumber: str | None = None
    emailAddress: str | None = None
    pushRegistrationId: str | None = None
    whatsAppUserId: Annotated[str, Meta(max_length=150)] | None = None
    facebookUserKey: str | None = None
    lineUserKey: str | None = None


class Destination(Base):
    """One destination of a send request."""

    to: To | None = None
    messageId: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


class AdvancedRequest(Base):
    """Body of POST ``/omni/1/advanced``."""

    destinations: list[Destination] | None = None
    scenarioKey: str | None = None
    bulkId: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    sms: SmsData | None = None
    whatsApp: WhatsAppData | None = None
    viber: ViberData | None = None
    voice: VoiceData | None = None
    email: EmailData | None = None
    push: PushData | None = None
    line: LineData | None = None
    vKontakte: VKontakteData | None = None
    kakaoAlim: KakaoAlimData | None = None
    kakaoChingu: KakaoChinguData | None = None
    facebook: FacebookData | None = None
    parseco: ChannelData | None = None
    notify: bool | None = None
    intermediateReport: bool | None = None
    notifyUrl: Annotated[str, Meta(max_length=2048)] | None = None
    notifyContentType: str | None = None
    callbackData: Annotated[str, Meta(max_length=4000)] | None = None
    sendAt: str | None = None


class SimpleRequest(Base):
    """Body of the legacy POST ``/omni/1/text``: one text for every channel."""

    destinations: list[Destination] | None = None
    scenarioKey: str | None = None
    bulkId: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    text: str | None = None
    mailSubject: str | None = None


class SentMessage(msgspec.Struct):
    """One accepted destination in a send answer."""

    to: To
    status: Status
    messageId: str


class SendResponse(msgspec.Struct, omit_defaults=True):
    """Answer of the send endpoints."""

    messages: list[SentMessage]
    bulkId: str | None = None


# --- reports, logs -----------------------------------------------------------------------------


class Price(msgspec.Struct):
    pricePerMessage: float
    currency: str


class Report(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A delivery report, as pulled from ``/omni/1/reports`` and pushed to ``notifyUrl``."""

    bulkId: str | None = None
    messageId: str
    to: str
    sentAt: str | None = None
    doneAt: str | None = None
    messageCount: int
    mccMnc: str | None = None
    price: Price | None = None
    status: Status
    error: Error
    channel: str
    callbackData: str | None = None


class Reports(msgspec.Struct):
    """``{"results": [...]}``: the reports answer and webhook body."""

    results: list[Report]


class SeenReport(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The recipient read a message (WhatsApp ``read``), as pushed to ``notifyUrl``. Infobip's documents spell
    the submission time both ``sentAt`` (older WhatsApp pages) and ``sendAt`` (the spec): both are given."""

    messageId: str
    from_: str | None = msgspec.field(default=None, name="from")
    to: str
    sentAt: str | None = None
    sendAt: str | None = None
    seenAt: str


class SeenReports(msgspec.Struct):
    """``{"results": [...]}`` of seen reports."""

    results: list[SeenReport]


class LogEntry(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One entry of ``/omni/1/logs``."""

    bulkId: str | None = None
    messageId: str
    to: str
    from_: str | None = msgspec.field(default=None, name="from")
    text: str | None = None
    sentAt: str | None = None
    doneAt: str | None = None
    messageCount: int
    mccMnc: str | None = None
    price: Price | None = None
    status: Status
    channel: str | None = None


class Logs(msgspec.Struct):
    results: list[LogEntry]


# --- errors ------------------------------------------------------------------------------------


class ServiceException(msgspec.Struct, omit_defaults=True):
    messageId: str
    text: str
    validationErrors: dict[str, list[str]] | None = None


class RequestError(msgspec.Struct):
    serviceException: ServiceException


class ApiError(msgspec.Struct):
    """Infobip's error envelope: ``{"requestError":{"serviceException":{...}}}``."""

    requestError: RequestError


NotifyContentType = Literal["application/json", "application/xml"]
