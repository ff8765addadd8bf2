"""OMNI channels and the kinds of address each one delivers to."""

from __future__ import annotations

import enum


class Channel(enum.StrEnum):
    """A channel that a scenario step can use (the OMNI enum, legacy values included)."""

    SMS = "SMS"
    EMAIL = "EMAIL"
    VOICE = "VOICE"
    PUSH = "PUSH"
    VIBER = "VIBER"
    LINE = "LINE"
    VKONTAKTE = "VKONTAKTE"
    KAKAO_CHINGU = "KAKAO_CHINGU"
    KAKAO_ALIM = "KAKAO_ALIM"
    WHATSAPP = "WHATSAPP"
    FACEBOOK = "FACEBOOK"
    PARSECO = "PARSECO"


#: Spellings accepted on input besides the enum values (Infobip's old docs list ``VK``).
ALIASES: dict[str, Channel] = {"VK": Channel.VKONTAKTE}


def parse_channel(name: str) -> Channel:
    """The channel for an input name (aliases included); ValueError for anything else."""
    alias = ALIASES.get(name)
    return alias if alias is not None else Channel(name)


#: Channels whose step must name a sender (``from``) in the scenario.
NEEDS_SENDER: frozenset[Channel] = frozenset(
    {Channel.WHATSAPP, Channel.VIBER, Channel.EMAIL, Channel.PUSH, Channel.KAKAO_ALIM, Channel.KAKAO_CHINGU}
)

#: For each channel, the ``to`` fields that can address it, in order of preference.
ADDRESS_FIELDS: dict[Channel, tuple[str, ...]] = {
    Channel.SMS: ("phoneNumber",),
    Channel.VOICE: ("phoneNumber",),
    Channel.VIBER: ("phoneNumber",),
    Channel.WHATSAPP: ("phoneNumber", "whatsAppUserId"),
    Channel.KAKAO_ALIM: ("phoneNumber",),
    Channel.KAKAO_CHINGU: ("phoneNumber",),
    Channel.VKONTAKTE: ("phoneNumber",),
    Channel.PARSECO: ("phoneNumber",),
    Channel.EMAIL: ("emailAddress",),
    Channel.PUSH: ("pushRegistrationId", "phoneNumber"),
    Channel.LINE: ("lineUserKey", "phoneNumber"),
    Channel.FACEBOOK: ("facebookUserKey", "phoneNumber"),
}

#: The request field holding each channel's content.
CONTENT_FIELDS: dict[Channel, str] = {
    Channel.SMS: "sms",
    Channel.EMAIL: "email",
    Channel.VOICE: "voice",
    Channel.PUSH: "push",
    Channel.VIBER: "viber",
    Channel.LINE: "line",
    Channel.VKONTAKTE: "vKontakte",
    Channel.KAKAO_CHINGU: "kakaoChingu",
    Channel.KAKAO_ALIM: "kakaoAlim",
    Channel.WHATSAPP: "whatsApp",
    Channel.FACEBOOK: "facebook",
    Channel.PARSECO: "parseco",
}
