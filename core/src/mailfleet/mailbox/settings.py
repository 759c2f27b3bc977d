"""The bounce mailbox's connection settings, with provider presets applied."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs
import tenacity

from mailfleet.config import BouncesConfig
from mailfleet.errors import ConfigError, MailboxError
from mailfleet.plugins.providers import Security
from mailfleet.secrets import Secret, SecretRef, mask_secrets

if TYPE_CHECKING:
    from mailfleet.plugins.manager import Plugins

_DEFAULT_PORTS = {
    ("imap", Security.SSL): 993, ("imap", Security.STARTTLS): 143, ("imap", Security.NONE): 143,
    ("pop3", Security.SSL): 995, ("pop3", Security.STARTTLS): 110, ("pop3", Security.NONE): 110,
}


class ReaderState(Protocol):
    """Where a reader remembers what it has read (the store implements it)."""

    def kv_get(self, key: str) -> str | None: ...

    def kv_set(self, key: str, value: str) -> None: ...


@attrs.frozen
class MailboxSettings:
    """A resolved bounce mailbox: every preset applied, the password still by reference."""

    protocol: Literal["imap", "pop3"]
    host: str
    port: int
    security: Security
    login: str
    folder: str
    processed: Literal["flag", "move", "delete", "none"]
    move_to: str
    timeout: float
    tls_verify: bool
    ca_file: str | None
    allow_insecure_auth: bool
    secret: SecretRef = attrs.field(repr=False, eq=False)
    auth: Literal["password", "xoauth2"] = "password"
    token_source: Callable[[MailboxSettings], str | None] | None = attrs.field(
        default=None, repr=False, eq=False)

    def oauth_token(self) -> str:
        """A fresh OAuth2 token from the plugins (``mailfleet_mailbox_token``), read now."""
        token = self.token_source(self) if self.token_source is not None else None
        if not token:
            raise MailboxError("auth", f"no plugin supplied an OAuth2 token for {self.login} "
                               f"(bounces.auth = \"xoauth2\"); implement the "
                               f"mailfleet_mailbox_token hook", transient=False)
        return token

    def password(self) -> Secret:
        secret = self.secret.read()
        if secret is None:
            raise ConfigError("bounces: no password; set password_env or password_file")
        return secret

    def mask(self, text: str) -> str:
        """Server text with the password masked: a refusal may echo it, as sent (IMAP quotes
        it) or escaped the way Python shows bytes (imaplib's errors)."""
        try:
            secret = self.secret.read()
        except ConfigError:
            return text
        if secret is None:
            return text
        value = secret.reveal()
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        forms = (value, quoted)
        return mask_secrets(text, (*forms, *(repr(f.encode())[2:-1] for f in forms)))

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @property
    def state_key(self) -> str:
        """The key under which the reader keeps its progress for this mailbox."""
        where = self.folder if self.protocol == "imap" else ""
        return f"{self.protocol}:{self.login}@{self.host}:{self.port}/{where}"


def resolve_mailbox(config: BouncesConfig, plugins: Plugins | None = None) -> MailboxSettings:
    """Apply the provider's IMAP/POP3 presets (by ``provider`` or the login's domain)."""
    problems = []
    if not config.login:
        problems.append("bounces.login: required (the bounce mailbox's user name)")
    provider = None
    if plugins is not None:
        provider = plugins.info(plugins.provider_for(config.provider, config.login,
                                                     host=config.host))
    presets = () if provider is None else (
        provider.imap if config.protocol == "imap" else provider.pop3)
    host = config.host or (presets[0].host if presets else None)
    if host is None:
        problems.append(f"bounces.host: required (no {config.protocol} preset for this "
                        f"provider); add host = \"{config.protocol}.example.com\"")
    security, port = config.security, config.port
    matching = [p for p in presets if p.host == host]
    if security is None and port is None and matching:
        security, port = matching[0].security, matching[0].port
    if security is None:
        by_port = [p for p in matching if p.port == port]
        security = by_port[0].security if by_port else Security.SSL
    if port is None:
        by_mode = [p for p in matching if p.security is security]
        port = by_mode[0].port if by_mode else _DEFAULT_PORTS[(config.protocol, security)]
    if security is Security.NONE and not config.allow_insecure_auth:
        problems.append("bounces.security: a login over an unencrypted connection is refused; "
                        "use ssl or starttls, or set allow_insecure_auth = true")
    if config.auth == "password" and not config.secret_ref().present:
        problems.append("bounces: no password; add password_env or password_file")
    if problems or host is None or config.login is None:
        raise ConfigError(problems)
    return MailboxSettings(
        auth=config.auth, token_source=plugins.mailbox_token if plugins is not None else None,
        protocol=config.protocol, host=host, port=port, security=security, login=config.login,
        folder=config.folder, processed=config.processed, move_to=config.move_to,
        timeout=config.timeout, tls_verify=config.tls_verify, ca_file=config.ca_file,
        allow_insecure_auth=config.allow_insecure_auth, secret=config.secret_ref())


def reconnect_policy(attempts: int = 4,
                     sleep: Callable[[float], None] | None = None) -> tenacity.Retrying:
    """Retry a reading cycle after a dropped connection, with backoff; never a refused login."""
    extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=0.5, max=10),
        retry=tenacity.retry_if_exception(
            lambda exc: isinstance(exc, MailboxError) and exc.transient),
        reraise=True, **extra)


def connect_error(settings: MailboxSettings, exc: BaseException) -> MailboxError:
    """The error for a connection that failed before login: an untrusted certificate is
    final; a refused connection or a handshake cut short is retried."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, ssl.SSLError):
        return MailboxError("tls", f"TLS with {where} failed: {exc.reason or exc}",
                            transient=not isinstance(exc, ssl.SSLCertVerificationError))
    return MailboxError("connect", f"cannot reach {where}: {exc}")
