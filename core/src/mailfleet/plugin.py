"""The public plugin API: everything a provider plugin needs, and nothing else.

A plugin imports only from this module (the built-in providers do; a test enforces it), so
the core's internals can change without breaking third parties. The names below follow
semantic versioning with the ``mailfleet`` distribution; the hooks themselves are documented
in docs/hooks.md and :mod:`mailfleet.hookspecs`.

::

    from mailfleet.plugin import ProviderInfo, Endpoint, Security, hookimpl

    PROVIDER = ProviderInfo(id="acmeisp", name="Acme ISP", domains=("acme.example",),
                            smtp=(Endpoint("smtp.acme.example", 465, Security.SSL),))

    @hookimpl
    def mailfleet_provider() -> ProviderInfo:
        return PROVIDER
"""

from mailfleet.bounces.report import BounceReport, FailedRecipient
from mailfleet.config import Deployment
from mailfleet.errors import Classification, Diagnosis, SmtpError, Stage
from mailfleet.events import DeliveryEvent, EventType
from mailfleet.hookspecs import hookimpl
from mailfleet.mailbox.settings import MailboxSettings
from mailfleet.plugins.providers import Endpoint, Limits, ProviderInfo, Security
from mailfleet.sending.diagnosis import REPLY_LINK, ReplyRule, duration, match_rules
from mailfleet.sending.envelope import Envelope, SendResult, SmtpSession
from mailfleet.sending.outgoing import OutgoingLetter
from mailfleet.sending.sender import SenderDecision, SenderRequest
from mailfleet.sending.servers import Server

__all__ = [
    "REPLY_LINK",
    "BounceReport",
    "Classification",
    "DeliveryEvent",
    "Deployment",
    "Diagnosis",
    "Endpoint",
    "Envelope",
    "EventType",
    "FailedRecipient",
    "Limits",
    "MailboxSettings",
    "OutgoingLetter",
    "ProviderInfo",
    "ReplyRule",
    "Security",
    "SendResult",
    "SenderDecision",
    "SenderRequest",
    "Server",
    "SmtpError",
    "SmtpSession",
    "Stage",
    "duration",
    "hookimpl",
    "match_rules",
]
