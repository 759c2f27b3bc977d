"""Resolved servers: a ``ServerConfig`` with its provider chosen and presets applied."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import attrs

from mailfleet.addresses import check_header, normalize_address
from mailfleet.config import Config, ServerConfig
from mailfleet.errors import AddressError, ConfigError, HeaderError, PluginError
from mailfleet.plugins.providers import Limits, ProviderInfo, Security
from mailfleet.secrets import Secret, SecretRef

if TYPE_CHECKING:
    from mailfleet.plugins.manager import Plugins

GENERIC = "generic"


@attrs.frozen
class Server:
    """One SMTP server ready to use; every field is final (no ``None`` presets left).

    ``provider`` is the id of the plugin that handles it (``generic`` when none claims it);
    ``login`` is ``None`` when the server takes no AUTH; ``provider_options`` holds the
    ``options`` checked against the provider's schema (an instance of
    ``ProviderInfo.options``). The password is not held here: :meth:`password` reads it from
    its reference at the moment of use.
    """

    name: str
    kind: Literal["internal", "external"]
    provider: str
    sender: str
    sender_name: str
    host: str
    port: int
    security: Security
    login: str | None
    auth: Literal["password", "xoauth2", "none"]
    timeout: float
    allow_sender_override: bool
    aliases: tuple[str, ...]
    priority: int
    limits: Limits
    connections: int
    tls_verify: bool
    ca_file: str | None
    allow_insecure_auth: bool
    operator_default: bool
    enabled: bool
    #: the tenant whose mailings it sends (``None``: a shared server, every tenant's)
    tenant: str | None = None
    #: letters one session carries before the client reconnects (``None``: no limit)
    letters_per_connection: int | None = None
    options: dict[str, Any] = attrs.field(factory=dict, eq=False, hash=False)
    provider_options: Any = attrs.field(default=None, eq=False, hash=False, repr=False)
    provider_info: ProviderInfo | None = attrs.field(default=None, eq=False, repr=False)
    secret: SecretRef = attrs.field(factory=lambda: SecretRef("server"), eq=False, repr=False)

    def password(self) -> Secret | None:
        """The server's password, read now from ``password_env``/``password_file``."""
        return self.secret.read()

    @property
    def domain(self) -> str:
        """The domain of the sender address."""
        return self.sender.rpartition("@")[2].lower()


_DEFAULT_PORTS = {Security.SSL: 465, Security.STARTTLS: 587, Security.NONE: 25}
_PORT_SECURITY = {465: Security.SSL, 587: Security.STARTTLS, 25: Security.STARTTLS}


def resolve_servers(config: Config, plugins: Plugins) -> list[Server]:
    """Apply provider presets to every configured server and validate the result.

    Raises ConfigError listing every problem of every server at once.
    """
    problems: list[str] = []
    servers: list[Server] = []
    seen: set[str] = set()
    for index, raw in enumerate(config.servers):
        where = f"servers[{index}]" if not raw.name else f"servers[{raw.name}]"
        if raw.name in seen:
            problems.append(f"{where}.name: two servers are named {raw.name!r}; names must "
                            f"be unique")
        seen.add(raw.name)
        try:
            server = _resolve_one(raw, where, plugins)
        except (ConfigError, PluginError, AddressError, HeaderError) as exc:
            problems.extend(exc.problems if isinstance(exc, ConfigError)
                            else [f"{where}: {exc}"])
            continue
        problems.extend(plugins.validate_server(server, config.deployment))
        servers.append(server)
    if problems:
        raise ConfigError([f"{config.source}: {p}" for p in problems])
    return sorted(servers, key=lambda s: s.priority)


def _resolve_one(raw: ServerConfig, where: str, plugins: Plugins) -> Server:
    try:
        sender = normalize_address(raw.sender)
    except AddressError as exc:
        raise ConfigError(f"{where}.sender: {exc}") from None
    check_header("sender_name", raw.sender_name)
    if raw.kind == "internal":
        provider = raw.provider or plugins.internal_provider()
    else:
        provider = plugins.provider_for(raw.provider, raw.login, sender, host=raw.host)
    info = plugins.info(provider)
    provider_options = plugins.provider_options(provider, dict(raw.options))
    presets = info.smtp if info else ()
    host = raw.host or (presets[0].host if presets else None)
    if host is None:
        if raw.kind == "internal":
            host = "localhost"
        else:
            raise ConfigError(f"{where}.host: required for an external server "
                              f"(provider {provider!r} has no preset); add host = \"smtp...\"")
    matching = [e for e in presets if e.host == host or not raw.host]
    security, port = raw.security, raw.port
    if security is None and port is None:
        preset = matching[0] if matching else None
        if preset is not None:
            security, port = preset.security, preset.port
        elif raw.kind == "internal":
            security, port = Security.NONE, 25
        else:
            security, port = Security.STARTTLS, 587
    elif port is None:
        by_mode = [e for e in matching if e.security is security]
        port = by_mode[0].port if by_mode else _DEFAULT_PORTS[security]  # type: ignore[index]
    elif security is None:
        by_port = [e for e in matching if e.port == port]
        security = by_port[0].security if by_port else (
            Security.NONE if raw.kind == "internal" else _PORT_SECURITY.get(port,
                                                                            Security.STARTTLS))
    assert security is not None and port is not None
    login = raw.login
    if login is None and raw.kind == "external" and info is not None and info.smtp:
        login = sender if info.login == "address" else sender.partition("@")[0]
    auth = raw.auth or ("none" if login is None else "password")
    override = bool(raw.allow_sender_override)  # off unless the operator ticks it
    timeout = raw.timeout if raw.timeout is not None else (info.timeout if info else 30.0)
    limits = raw.limits.merged_over(info.limits) if info else raw.limits
    return Server(
        name=raw.name, kind=raw.kind, provider=provider, sender=sender,
        sender_name=raw.sender_name, host=host, port=port, security=security, login=login,
        auth=auth, timeout=timeout, allow_sender_override=override,
        aliases=tuple(normalize_address(a) for a in raw.aliases), priority=raw.priority,
        limits=limits, connections=raw.connections, tls_verify=raw.tls_verify,
        ca_file=raw.ca_file, allow_insecure_auth=raw.allow_insecure_auth,
        operator_default=raw.operator_default, enabled=raw.enabled, tenant=raw.tenant,
        letters_per_connection=raw.letters_per_connection, options=dict(raw.options),
        provider_options=provider_options, provider_info=info, secret=raw.secret_ref(where))
