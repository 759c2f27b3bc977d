"""mailfleet provider plugin for Mail.ru (VK) (entry point ``mailru``)."""

from __future__ import annotations

from mailfleet import hookimpl
from mailfleet.config import Deployment
from mailfleet.errors import Diagnosis, SmtpError
from mailfleet.providers import ProviderInfo
from mailfleet.servers import Server
from mailfleet_mailru import ratelimit, replies
from mailfleet_mailru.provider import PROVIDER

__all__ = ["PROVIDER"]


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER


@hookimpl
def mailfleet_validate_server(server: Server, deployment: Deployment) -> list[str]:
    return ratelimit.validate(server, deployment)


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    return replies.diagnose(server, error, locale)
