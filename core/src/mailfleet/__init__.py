"""mailfleet: mass mailings through a fleet of SMTP servers, with quotas and bounces."""

from mailfleet.errors import (
    AddressError,
    Classification,
    ConfigError,
    Diagnosis,
    HeaderError,
    MailfleetError,
    PluginError,
    SmtpError,
    Stage,
)
from mailfleet.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "AddressError",
    "Classification",
    "ConfigError",
    "Diagnosis",
    "HeaderError",
    "MailfleetError",
    "PluginError",
    "SmtpError",
    "Stage",
    "__version__",
    "hookimpl",
]
