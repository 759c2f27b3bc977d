"""mailfleet provider plugin for Rambler Mail (entry point ``rambler``)."""

from __future__ import annotations

from mailfleet.plugin import Diagnosis, ProviderInfo, Server, SmtpError, hookimpl
from mailfleet_rambler import replies
from mailfleet_rambler.provider import PROVIDER

__all__ = ["PROVIDER"]


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    return replies.diagnose(server, error, locale)
