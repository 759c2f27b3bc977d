"""mailfleet provider plugin for Yandex Mail and Yandex 360 (entry point ``yandex``).

Login: the full address (confirmed for yandex.* and Yandex 360). The old "local part for
@yandex.ru" rule is unconfirmed, so it is not retried automatically (a second failed AUTH
counts towards login lock-outs); the diagnosis of ``Invalid user or password`` names it as
the last thing to try, with ``login = "..."`` in the config.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from mailfleet.plugin import (
    Diagnosis,
    Envelope,
    ProviderInfo,
    SendResult,
    Server,
    SmtpError,
    SmtpSession,
    hookimpl,
)
from mailfleet_yandex import replies
from mailfleet_yandex.provider import PROVIDER
from mailfleet_yandex.sending import send_until_refused

__all__ = ["PROVIDER"]


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    return replies.diagnose(server, error, locale)


@hookimpl
def mailfleet_send(server: Server, session: SmtpSession,
                   envelopes: Sequence[Envelope]) -> Awaitable[list[SendResult]]:
    return send_until_refused(server, session, envelopes)
