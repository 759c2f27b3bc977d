"""mailfleet provider plugin for Gmail (entry point ``gmail``).

Google Workspace is the same distribution's second provider, ``google-workspace``
(:mod:`mailfleet_gmail.workspace`): same presets and replies, Workspace limits, no domains.
"""

from __future__ import annotations

from mailfleet.plugin import Diagnosis, ProviderInfo, Server, SmtpError, hookimpl
from mailfleet_gmail import replies
from mailfleet_gmail.provider import GMAIL

PROVIDER = GMAIL


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return GMAIL


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    return replies.diagnose(server, error, locale)
