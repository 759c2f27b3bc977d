"""mailfleet provider plugin for Rambler Mail (entry point ``rambler``)."""

from __future__ import annotations

from mailfleet import hookimpl
from mailfleet.config import Deployment
from mailfleet.errors import Diagnosis, SmtpError
from mailfleet.providers import ProviderInfo
from mailfleet.sender import SenderDecision, SenderRequest
from mailfleet.servers import Server

from mailfleet_rambler import replies, sender
from mailfleet_rambler.provider import PROVIDER

__all__ = ["PROVIDER"]


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER


@hookimpl
def mailfleet_validate_server(server: Server, deployment: Deployment) -> list[str]:
    return sender.validate(server, deployment)


@hookimpl
def mailfleet_sender_policy(server: Server, wanted: SenderRequest) -> SenderDecision:
    return sender.sender_policy(server, wanted)


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    return replies.diagnose(server, error, locale)
