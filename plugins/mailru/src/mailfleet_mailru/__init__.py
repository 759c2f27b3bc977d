"""mailfleet provider plugin for Mail.ru (VK) (entry point ``mailru``)."""

from __future__ import annotations

from mailfleet.plugin import Diagnosis, ProviderInfo, Server, SmtpError, hookimpl
from mailfleet_mailru import replies
from mailfleet_mailru.provider import PROVIDER

__all__ = ["PROVIDER"]


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    return replies.diagnose(server, error, locale)
