"""What a provider plugin declares about itself: domains, presets, login rule, limits."""

from __future__ import annotations

import enum
from typing import Any, Literal

import attrs


class Security(enum.StrEnum):
    """How a connection is protected: implicit TLS, STARTTLS upgrade, or none."""

    SSL = "ssl"
    STARTTLS = "starttls"
    NONE = "none"


@attrs.frozen
class Endpoint:
    """One host, port and security mode of a provider's SMTP, IMAP or POP3 service."""

    host: str
    port: int
    security: Security


@attrs.frozen
class Limits:
    """Sending limits of one server; ``None`` means no limit of that kind.

    ``window`` is ``rolling`` (the last 60 minutes / 24 hours, what most providers do) or
    ``calendar`` (the clock hour and day in ``timezone``).
    """

    per_minute: int | None = None
    per_hour: int | None = None
    per_day: int | None = None
    recipients_per_letter: int | None = None
    window: Literal["rolling", "calendar"] = "rolling"
    timezone: str = "UTC"

    def merged_over(self, default: Limits) -> Limits:
        """These limits with every unset value taken from ``default``."""
        return Limits(
            per_minute=self.per_minute if self.per_minute is not None else default.per_minute,
            per_hour=self.per_hour if self.per_hour is not None else default.per_hour,
            per_day=self.per_day if self.per_day is not None else default.per_day,
            recipients_per_letter=(
                self.recipients_per_letter
                if self.recipients_per_letter is not None
                else default.recipients_per_letter
            ),
            window=self.window,
            timezone=self.timezone,
        )


@attrs.frozen
class ProviderInfo:
    """A provider's identity and presets, returned by ``mailfleet_provider``.

    ``id`` must equal the plugin's entry-point name. ``smtp``, ``imap`` and ``pop3`` list the
    endpoints in order of preference (the first is the preset). ``login`` is the login rule:
    ``address`` (the full address) or ``localpart``; ``login_fallbacks`` lists other forms the
    provider also accepts when the user writes them out. ``sender_substitution`` says whether the
    provider lets a server send From an address other than its own (free providers do not).
    ``auth`` lists the mechanisms the provider accepts: ``password``, ``app_password``,
    ``xoauth2``.

    Detection: a server without ``provider`` belongs to the provider whose SMTP host it uses
    (the hosts of ``smtp``, ``imap`` and ``pop3`` and the extra names in ``hosts``), else to
    the provider of its login's or sender's domain (``domains``); a provider without domains
    (Google Workspace, custom domains only) is chosen only by an explicit ``provider``.
    ``kinds`` lists the server kinds the provider serves by default: a provider with
    ``"internal"`` is the default of ``kind = "internal"`` servers (this host's MTA).

    ``options`` is the schema of the provider's server options (``[servers.options]``): an
    attrs class whose fields are the option names with their types, defaults and validators.
    Unknown or bad options are refused at config load, with the key path and the fix; ``None``
    means the provider takes no options.

    Where ``sender_substitution`` is false, only the mailbox and its declared ``aliases`` may
    send: ``sender_rule`` says why in one clause (quoting the provider's refusal),
    ``alias_help`` how an address becomes an alias, ``envelope_sender`` whether the envelope
    sender is the From (``from``) or always the login (``login``), and ``verp`` whether a
    per-letter envelope sender (VERP) survives. There the server's own address is the login's
    mailbox: ``sender_aliases`` says whether declared ``aliases`` may send too, and
    ``foreign_sender`` what the provider does with any other configured ``sender``:
    ``refused`` (the config is refused at load, naming the fix) or ``rewritten`` (the letter
    goes From the login, and the decision says why). ``timeout`` is the preset SMTP timeout in
    seconds (a server's ``timeout`` overrides it).
    """

    id: str
    name: str
    domains: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    smtp: tuple[Endpoint, ...] = ()
    imap: tuple[Endpoint, ...] = ()
    pop3: tuple[Endpoint, ...] = ()
    login: Literal["address", "localpart"] = "address"
    login_fallbacks: tuple[Literal["address", "localpart"], ...] = ()
    auth: tuple[str, ...] = ("password",)
    limits: Limits = attrs.field(factory=Limits)
    sender_substitution: bool = True
    sender_rule: str = ""
    alias_help: str = ""
    envelope_sender: Literal["from", "login"] = "from"
    verp: bool = True
    sender_aliases: bool = True
    foreign_sender: Literal["refused", "rewritten"] = "refused"
    timeout: float = 30.0
    help_url: str | None = None
    kinds: tuple[Literal["internal", "external"], ...] = ("external",)
    options: type[Any] | None = None

    def served_hosts(self) -> frozenset[str]:
        """Every host name that identifies this provider (lower case)."""
        endpoints = (*self.smtp, *self.imap, *self.pop3)
        return frozenset(h.lower() for h in (*self.hosts, *(e.host for e in endpoints))
                         if h.lower() not in _LOCAL_HOSTS)


_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})
