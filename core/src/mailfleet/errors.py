"""The error tree: every failure mailfleet raises derives from :class:`MailfleetError`.

Secrets never enter an error: messages are built from config keys, server replies and
addresses only, and SMTP replies are scrubbed of anything that echoes an AUTH payload.
"""

from __future__ import annotations

import enum

import attrs


class Stage(enum.StrEnum):
    """Where in an SMTP conversation a failure happened."""

    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    MAIL_FROM = "mail_from"
    RCPT_TO = "rcpt_to"
    DATA = "data"


class Classification(enum.StrEnum):
    """What a failure means for the sender.

    ``transient``: retry the same letter later on the same server.
    ``permanent``: this recipient or this letter will never go; fail it alone.
    ``server``: this server cannot send now (auth failed, sender refused, blocked as spam);
    move on to the next server.
    ``quota``: this server's provider says a sending limit is spent; block it until its
    window resets, put the letter back uncharged.
    """

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    SERVER = "server"
    QUOTA = "quota"


class MailfleetError(Exception):
    """Root of every error mailfleet raises."""


class ConfigError(MailfleetError):
    """The configuration is invalid; ``problems`` lists each bad key with its fix."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class ConfigFileError(ConfigError):
    """The config file cannot be read at all: ``path``, and ``reason``: ``missing`` (no such
    file) or ``directory`` (the path names a directory)."""

    def __init__(self, path: str, reason: str, problem: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(problem)


class PluginError(MailfleetError):
    """A plugin could not be loaded or broke its contract."""


class StoreUnavailable(MailfleetError):
    """The store's database cannot be reached now (a dropped connection, a database
    restarting, a deadlock); the same call may succeed later. Never holds a password."""


class AddressError(MailfleetError, ValueError):
    """An e-mail address is malformed."""


class HeaderError(MailfleetError, ValueError):
    """A header value is unsafe (CR/LF injection) or malformed."""


class TemplateError(MailfleetError, ValueError):
    """A mailing template or its recipients are invalid."""


@attrs.frozen
class Diagnosis:
    """A provider's reading of an SMTP failure, for people and for the dispatcher.

    ``summary`` says what happened in plain language, ``next_step`` what the user must do;
    ``block_seconds`` (with ``quota``/``server``) is how long the server should rest;
    ``url`` is the provider's page to open, when there is one.
    """

    classification: Classification
    summary: str
    next_step: str = ""
    reason: str = "undefined"
    block_seconds: int | None = None
    url: str | None = None
    pause_mailings: bool = False


class SmtpError(MailfleetError):
    """An SMTP conversation failed.

    Carries the ``stage``, the ``code`` and ``enhanced_status`` of the reply (``None`` when no
    reply came: connect refused, timeout, TLS failure), the server's ``reply`` text and a
    ``classification``. Immutable: :meth:`with_diagnosis` returns the diagnosed copy, which
    is what the fleet hands on (each failure is diagnosed once, where the transport returns
    it).
    """

    def __init__(
        self,
        stage: Stage,
        reply: str,
        *,
        code: int | None = None,
        enhanced_status: str | None = None,
        classification: Classification | None = None,
        diagnosis: Diagnosis | None = None,
        server: str | None = None,
        recipient: str | None = None,
    ) -> None:
        self.__dict__.update(
            stage=stage, code=code, enhanced_status=enhanced_status, reply=reply,
            classification=classification or default_classification(stage, code),
            diagnosis=diagnosis, server=server, recipient=recipient)
        super().__init__(str(self))

    stage: Stage
    code: int | None
    enhanced_status: str | None
    reply: str
    classification: Classification
    diagnosis: Diagnosis | None
    server: str | None
    recipient: str | None

    def __setattr__(self, name: str, value: object) -> None:
        if not name.startswith("__"):  # Python itself sets __traceback__, __cause__, ...
            raise AttributeError(f"SmtpError is immutable (cannot set {name!r}); "
                                 "with_diagnosis returns a diagnosed copy")
        super().__setattr__(name, value)

    def __str__(self) -> str:
        where = f"server {self.server!r}, " if self.server else ""
        code = f"{self.code} " if self.code is not None else ""
        status = f"{self.enhanced_status} " if self.enhanced_status else ""
        text = f"{where}{self.stage.value}: {code}{status}{self.reply}".rstrip()
        if self.diagnosis is not None:
            text += f" [{self.diagnosis.classification.value}] {self.diagnosis.summary}"
            if self.diagnosis.next_step:
                text += f" Next step: {self.diagnosis.next_step}"
        return text

    def with_diagnosis(self, diagnosis: Diagnosis | None, server: str | None = None
                       ) -> SmtpError:
        """This failure with a provider's diagnosis (which also decides the classification)
        and the server's name when it had none; ``self`` when there is nothing to add."""
        server = self.server or server
        if diagnosis is None and server == self.server:
            return self
        return SmtpError(self.stage, self.reply, code=self.code,
                         enhanced_status=self.enhanced_status,
                         classification=diagnosis.classification if diagnosis else
                         self.classification, diagnosis=diagnosis or self.diagnosis,
                         server=server, recipient=self.recipient)


def default_classification(stage: Stage, code: int | None) -> Classification:
    """The classification a reply gets before any provider looks at it.

    No reply while connecting or negotiating TLS means the server is unusable now (server);
    a lost reply later is transient, and so is any 4xx. A 5xx at RCPT or DATA concerns the
    letter (permanent); at AUTH or MAIL FROM it concerns the server (auth or sender refused).
    """
    if code is None:
        if stage in (Stage.CONNECT, Stage.TLS):
            return Classification.SERVER
        return Classification.TRANSIENT
    if 400 <= code < 500:
        return Classification.TRANSIENT
    if stage in (Stage.AUTH, Stage.MAIL_FROM, Stage.CONNECT, Stage.TLS):
        return Classification.SERVER
    return Classification.PERMANENT


class MailboxError(MailfleetError):
    """Reading the bounce mailbox failed; ``stage`` is connect, tls, auth or read."""

    def __init__(self, stage: str, message: str, *, transient: bool = True) -> None:
        self.stage = stage
        self.transient = transient
        super().__init__(f"bounce mailbox {stage}: {message}")
