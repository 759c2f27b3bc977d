"""mailfleet: mass mailings through a fleet of SMTP servers, with quotas and bounces.

The names below are the public embedding API (``docs/embedding.md``), versioned by
``API_VERSION`` (semantic versioning); the application layer behind them is
:mod:`mailfleet.app`, loaded on first use so that ``import mailfleet.plugin`` stays light.
"""

from typing import TYPE_CHECKING, Any

from mailfleet.errors import (
    AddressError,
    Classification,
    ConfigError,
    ConfigFileError,
    Diagnosis,
    HeaderError,
    MailboxError,
    MailfleetError,
    PluginError,
    SmtpError,
    Stage,
    TemplateError,
)
from mailfleet.events import DeliveryEvent, EventType
from mailfleet.hookspecs import hookimpl
from mailfleet.secrets import Secret

if TYPE_CHECKING:
    from mailfleet.app import (
        API_VERSION,
        BounceFetch,
        Created,
        EventStream,
        Holder,
        LetterResult,
        Mailfleet,
        MailingCounts,
        MailingStateError,
        MailingStatus,
        SendReport,
        ServerBusyError,
        ServerQuota,
        SpentWindow,
        StoppedServer,
        SuppressedError,
        SuppressImport,
        Suppression,
        Window,
        WorkerStatus,
    )
    from mailfleet.bounces.handling import Handled
    from mailfleet.bounces.report import BounceReport
    from mailfleet.mailbox.budget import SetAsideMessage
    from mailfleet.mailings.mailing import BadRowsError
    from mailfleet.mailings.recipients import BadRow
    from mailfleet.mailings.template import Template
    from mailfleet.sending.fleet import CheckResult, Sent

__version__ = "0.1.0"

_LAZY = {
    "API_VERSION": "mailfleet.app", "BounceFetch": "mailfleet.app", "Created": "mailfleet.app",
    "EventStream": "mailfleet.app", "LetterResult": "mailfleet.app",
    "Mailfleet": "mailfleet.app", "MailingCounts": "mailfleet.app",
    "MailingStatus": "mailfleet.app", "SendReport": "mailfleet.app",
    "ServerQuota": "mailfleet.app", "SpentWindow": "mailfleet.app",
    "StoppedServer": "mailfleet.app", "Suppression": "mailfleet.app", "Window": "mailfleet.app",
    "WorkerStatus": "mailfleet.app",
    "Holder": "mailfleet.app", "MailingStateError": "mailfleet.app",
    "ServerBusyError": "mailfleet.app", "SuppressedError": "mailfleet.app",
    "SuppressImport": "mailfleet.app", "Handled": "mailfleet.bounces.handling",
    "SetAsideMessage": "mailfleet.mailbox.budget", "BounceReport": "mailfleet.bounces.report",
    "BadRowsError": "mailfleet.mailings.mailing", "BadRow": "mailfleet.mailings.recipients",
    "Template": "mailfleet.mailings.template", "CheckResult": "mailfleet.sending.fleet",
    "Sent": "mailfleet.sending.fleet",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mailfleet' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "API_VERSION",
    "AddressError",
    "BadRow",
    "BadRowsError",
    "BounceFetch",
    "BounceReport",
    "CheckResult",
    "Classification",
    "ConfigError",
    "ConfigFileError",
    "Created",
    "DeliveryEvent",
    "Diagnosis",
    "EventStream",
    "EventType",
    "Handled",
    "HeaderError",
    "Holder",
    "LetterResult",
    "MailboxError",
    "Mailfleet",
    "MailfleetError",
    "MailingCounts",
    "MailingStateError",
    "MailingStatus",
    "PluginError",
    "Secret",
    "SendReport",
    "Sent",
    "ServerBusyError",
    "ServerQuota",
    "SetAsideMessage",
    "SmtpError",
    "SpentWindow",
    "Stage",
    "StoppedServer",
    "SuppressImport",
    "SuppressedError",
    "Suppression",
    "Template",
    "TemplateError",
    "Window",
    "WorkerStatus",
    "__version__",
    "hookimpl",
]
