"""The configuration file: attrs models, one cattrs converter, readable errors.

Loading turns TOML into these frozen models; any unknown key or bad value is a
:class:`~mailfleet.errors.ConfigError` naming the key path, the bad value and the expected
form. Presets from provider plugins are applied later, by :mod:`mailfleet.sending.servers`.
"""

from __future__ import annotations

import difflib
import enum
import math
import os
import re
import ssl
import tomllib
import unicodedata
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, override

from mailfleet.errors import ConfigError, ConfigFileError
from mailfleet.plugins.providers import Limits, Security
from mailfleet.secrets import Secret, SecretRef, read_password_file
from mailfleet.sending.retry import RetryPolicy

CONFIG_ENV = "MAILFLEET_CONFIG"
T = TypeVar("T")
_MAX_CONFIG_BYTES = 4 * 1024 * 1024
_MAX_CA_BYTES = 16 * 1024 * 1024
_MAX_OPTIONS_DEPTH = 8
_MAX_PROBLEMS = 50
_MAX_ITEMS = 1000  # servers, aliases
_SQLITE_MAGIC = b"SQLite format 3\x00"

# -- value rules: each returns the problem with its fix, or None; None values are not checked

Rule = Callable[[Any], str | None]


class BadValues(ConfigError):
    """Values of one table that are out of range: ``items`` holds (key, shown value, problem).

    Raised when a config model is built with such values; the loader prefixes the table's path.
    """

    def __init__(self, items: list[tuple[str, str, str]]) -> None:
        self.items = items
        super().__init__([f"{key}: {problem} (got {shown})" for key, shown, problem in items])


def _shown(value: Any) -> str:
    """``value`` as it may appear in an error: a short repr, with a URL's password and a
    Secret masked."""
    if isinstance(value, str) and "://" in value:
        scheme, _, rest = value.partition("://")
        netloc, slash, path = rest.partition("/")
        user, at, host = netloc.rpartition("@")
        if at and ":" in user:
            value = f"{scheme}://{user.partition(':')[0]}:***@{host}{slash}{path}"
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "a number too long to show"
    except RecursionError:
        return "a value nested too deeply to show"
    return text if len(text) <= 80 else text[:60] + "...' (cut)"


def check_values(obj: Any, rules: Mapping[str, Rule]) -> None:
    """Raise BadValues listing every field of ``obj`` its rule refuses."""
    bad = []
    for key, rule in rules.items():
        value = getattr(obj, key)
        if value is not None and (problem := rule(value)) is not None:
            bad.append((key, _shown(value), problem))
    if bad:
        raise BadValues(bad)


def _number(low: float, high: float, unit: str, example: float, *,
            above_low: bool = False) -> Rule:
    """A finite number from ``low`` (or just above it) to ``high``."""
    bound = f"over {low:g} and at most {high:g}" if above_low else f"from {low:g} to {high:g}"

    def rule(value: float) -> str | None:
        if math.isfinite(value) and (value > low if above_low else value >= low) \
                and value <= high:
            return None
        return f"must be a finite number{' of ' + unit if unit else ''} {bound}; " \
               f"write e.g. {example:g}"
    return rule


def _count(low: int, high: int, example: int, note: str = "") -> Rule:
    def rule(value: int) -> str | None:
        if low <= value <= high:
            return None
        return f"must be a whole number from {low} to {high}{note}; write e.g. {example}"
    return rule


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _bad_character(value: str) -> str | None:
    """The first control, line/paragraph separator or bidi control character in ``value``."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs") or char in _BIDI_CONTROLS:
            return f"U+{ord(char):04X}"
    return None


def _line(what: str, max_length: int, *, empty: bool = False) -> Rule:
    """One line of text: no control characters, line or paragraph separators."""
    def rule(value: str) -> str | None:
        if not value.strip() and not (empty and value == ""):
            return f"must not be empty; write {what}"
        if len(value) > max_length:
            return f"is longer than {max_length} characters; write {what}"
        if (char := _bad_character(value)) is not None:
            return (f"holds the control or line-break character {char}; write {what} on "
                    f"one line, without control characters")
        return None
    return rule


def _host(value: str) -> str | None:
    if (problem := _line("a host name such as smtp.example.com", 253)(value)) is not None:
        return problem
    if any(c.isspace() or c in "/@" for c in value):
        return "is not a bare host name (no spaces, scheme, path or @); write e.g. " \
               "smtp.example.com"
    return None


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(value: str) -> str | None:
    if _ENV_NAME.fullmatch(value):
        return None
    hint = "the name without the $" if value.startswith("$") else "the variable's name"
    return (f"is not an environment variable name (letters, digits and _, not starting with "
            f"a digit); write {hint}, such as OFFICE_SMTP_PASSWORD")


def _secret(value: Secret) -> str | None:
    text = value.reveal()
    if not text.strip():
        return "is empty; write the password, or use password_env / password_file instead"
    if any(c in text for c in "\r\n\x00"):
        return "holds a line break or NUL; write the password on one line"
    return None


_ZONE_KEY = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")


def _timezone(value: str) -> str | None:
    fix = "use an IANA time zone name such as UTC or Europe/Moscow"
    if not _ZONE_KEY.fullmatch(value) or len(value) > 64:
        return f"is not a time zone name; {fix}"
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"is not a known time zone; {fix} (install tzdata if UTC is not found either)"
    return None


def _each(rule: Rule) -> Rule:
    def each(values: tuple[Any, ...]) -> str | None:
        for index, value in enumerate(values):
            if (problem := rule(value)) is not None:
                return f"item {index + 1} {problem}"
        return None
    return each


_NAME = _line("a short name such as office", 64)
_ADDRESS = _line("an address such as news@example.com", 320)
_LOGIN = _line("the login (user name)", 320)
_PATH = _line("a file path", 4096)
_PROVIDER = _line("a provider id such as gmail", 64)
_TENANT = _line("a tenant id such as acme", 64)
_TIMEOUT = _number(0, 3600, "seconds", 30, above_low=True)
_PORT = _count(1, 65535, 587)


@attrs.frozen
class Deployment:
    """``saas``: user servers on port 25 are refused; ``store``: SQLite path or postgresql:// URL;
    ``locale``: language of diagnoses (``en`` or ``ru``); ``lease_seconds``: a dispatcher that
    has not renewed its lease for this long (on another machine) is taken for dead and its
    letters are sent by others; ``in_doubt``: what becomes of a letter whose message went
    without a final reply (a crash or a dropped connection inside DATA): ``resend`` it
    (at-least-once) or ``hold`` it for review."""

    saas: bool = False
    store: str = "mailfleet.db"
    locale: Literal["en", "ru"] = "en"
    lease_seconds: float = 15.0
    in_doubt: Literal["resend", "hold"] = "resend"

    _RULES: ClassVar[Mapping[str, Rule]] = {
        "store": _line("a SQLite file path or a postgresql:// URL", 4096),
        "lease_seconds": _number(0.5, 86_400, "seconds", 15)}

    def __attrs_post_init__(self) -> None:
        check_values(self, self._RULES)


@attrs.frozen
class ServerConfig:
    """One SMTP server as the user wrote it (``None``: take the provider's preset)."""

    name: str
    sender: str
    kind: Literal["internal", "external"] = "external"
    provider: str | None = None
    sender_name: str = ""
    host: str | None = None
    port: int | None = None
    security: Security | None = None
    login: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    password: Secret | None = attrs.field(default=None, repr=False)
    auth: Literal["password", "xoauth2", "none"] | None = None
    timeout: float | None = None  # None: the provider's preset (30 s without one)
    allow_sender_override: bool | None = None
    aliases: tuple[str, ...] = ()
    priority: int = 100
    limits: Limits = attrs.field(factory=Limits)
    connections: int = 2
    letters_per_connection: int | None = None  # None: as many as the server takes
    tls_verify: bool = True
    ca_file: str | None = None
    allow_insecure_auth: bool = False
    operator_default: bool = False
    enabled: bool = True
    #: the tenant whose mailings this server sends (none: every tenant's, a shared server)
    tenant: str | None = None
    options: dict[str, Any] = attrs.field(factory=dict)

    _RULES: ClassVar[Mapping[str, Rule]] = {
        "name": _NAME, "sender": _ADDRESS, "provider": _PROVIDER, "tenant": _TENANT,
        "sender_name": _line("a display name such as Example News", 256, empty=True),
        "host": _host, "port": _PORT, "login": _LOGIN, "password_env": _env_name,
        "password_file": _PATH, "password": _secret, "timeout": _TIMEOUT,
        "aliases": _each(_ADDRESS), "priority": _count(0, 1_000_000, 1, " (lower is tried first)"),
        "connections": _count(1, 100, 2, " connections at once"), "ca_file": _PATH,
        "letters_per_connection": _count(1, 1_000_000, 100, " letters per session (leave "
                                         "it out for no limit)")}

    def __attrs_post_init__(self) -> None:
        check_values(self, self._RULES)

    def secret_ref(self, where: str) -> SecretRef:
        return SecretRef(where, env=self.password_env, file=self.password_file,
                         inline=self.password)


@attrs.frozen
class BouncesConfig:
    """The mailbox that receives bounce reports (read by ``mailfleet bounces fetch``).

    ``auth = "xoauth2"`` logs in with a token from the ``mailfleet_mailbox_token`` hook.
    ``verp``: send each letter with the envelope sender ``login+mf-<letter id>@domain``
    where the server allows it, so every bounce names its letter.
    """

    protocol: Literal["imap", "pop3"] = "imap"
    host: str | None = None
    port: int | None = None
    security: Security | None = None
    provider: str | None = None
    login: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    password: Secret | None = attrs.field(default=None, repr=False)
    folder: str = "INBOX"
    processed: Literal["flag", "move", "delete", "none"] = "flag"
    move_to: str = "Processed"
    timeout: float = 30.0
    tls_verify: bool = True
    ca_file: str | None = None
    allow_insecure_auth: bool = False
    soft_bounce_limit: int = 3
    soft_bounce_window_days: int = 30
    verp: bool = False
    auth: Literal["password", "xoauth2"] = "password"

    _RULES: ClassVar[Mapping[str, Rule]] = {
        "host": _host, "port": _PORT, "provider": _PROVIDER, "login": _LOGIN,
        "password_env": _env_name, "password_file": _PATH, "password": _secret,
        "folder": _line("a folder name such as INBOX", 255),
        "move_to": _line("a folder name such as Processed", 255), "timeout": _TIMEOUT,
        "ca_file": _PATH, "soft_bounce_limit": _count(1, 1000, 3),
        "soft_bounce_window_days": _count(1, 3650, 30, " days")}

    def __attrs_post_init__(self) -> None:
        check_values(self, self._RULES)

    def secret_ref(self) -> SecretRef:
        return SecretRef("bounces", env=self.password_env, file=self.password_file,
                         inline=self.password)


_WithFiles = TypeVar("_WithFiles", ServerConfig, BouncesConfig)


@attrs.frozen
class Config:
    """The whole configuration file."""

    deployment: Deployment = attrs.field(factory=Deployment)
    servers: tuple[ServerConfig, ...] = ()
    bounces: BouncesConfig | None = None
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    source: str = attrs.field(default="<memory>", eq=False)

    @property
    def store_location(self) -> str:
        """``deployment.store``; a relative path is taken from the config file's directory."""
        location = self.deployment.store
        return location if "://" in location else self.beside(location)

    def beside(self, path: str) -> str:
        """A path the config names: a relative one is taken from the config file's
        directory (a config from memory, whose source is ``<...>``, keeps it as given)."""
        if Path(path).is_absolute() or self.source.startswith("<"):
            return path
        return str(Path(self.source).resolve().parent / path)

    def with_files_beside(self) -> Config:
        """Every ``ca_file`` and ``password_file`` as :meth:`beside` reads it."""
        def fixed(table: _WithFiles) -> _WithFiles:
            return attrs.evolve(
                table, ca_file=table.ca_file and self.beside(table.ca_file),
                password_file=table.password_file and self.beside(table.password_file))

        return attrs.evolve(self, servers=tuple(fixed(s) for s in self.servers),
                            bounces=None if self.bounces is None else fixed(self.bounces))


# Tables whose models live outside this module are checked when they are structured.
_LIMIT = _count(1, 1_000_000_000, 100, "; leave the key out for no limit")
_TABLE_RULES: dict[type, Mapping[str, Rule]] = {
    Limits: {"per_minute": _LIMIT, "per_hour": _LIMIT, "per_day": _LIMIT,
             "recipients_per_letter": _count(1, 100_000, 50, "; leave the key out for no limit"),
             "timezone": _timezone},
    RetryPolicy: {"max_attempts": _count(1, 100, 5), "connect_attempts": _count(1, 20, 3),
                  "backoff_initial": _number(0, 604_800, "seconds", 60),
                  "backoff_multiplier": _number(1, 100, "", 2),
                  "backoff_max": _number(0, 604_800, "seconds", 3600),
                  "connect_backoff": _number(0, 3600, "seconds", 1),
                  "server_rest_seconds": _number(0, 604_800, "seconds", 300),
                  "breaker_seconds": _number(0, 86_400, "seconds", 30),
                  "server_rest_max": _number(0, 604_800, "seconds", 3600),
                  "max_server_failures": _count(1, 10_000, 10),
                  "store_retry_seconds": _number(0, 3600, "seconds", 15)},
}


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def structure_secret(value: Any, _: type) -> Secret:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return Secret(value)

    conv.register_structure_hook(Secret, structure_secret)
    conv.register_unstructure_hook(Secret, lambda _: "***")

    def structure_int(value: Any, _: type) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected an integer")
        return value

    def structure_float(value: Any, _: type) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number")
        try:
            return float(value)
        except OverflowError:
            raise ValueError("the number is far too large") from None

    def structure_bool(value: Any, _: type) -> bool:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value

    def structure_str(value: Any, _: type) -> str:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value

    def structure_enum(value: Any, cls: type[enum.Enum]) -> enum.Enum:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in cls)
            raise ValueError(f"expected one of {allowed}") from None

    conv.register_structure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), structure_enum
    )
    conv.register_structure_hook(Security | None, lambda v, _: None if v is None
                                 else structure_enum(v, Security))
    conv.register_structure_hook(int, structure_int)
    conv.register_structure_hook(float, structure_float)
    conv.register_structure_hook(bool, structure_bool)
    conv.register_structure_hook(str, structure_str)

    def table_hook(cls: type) -> Callable[[Any, type], Any]:
        loader_set: dict[str, Any] = {"source": override(omit=True)} if cls is Config else {}
        base: Callable[[Any, Any], Any] = make_dict_structure_fn(
            cls, conv, _cattrs_forbid_extra_keys=True, **loader_set)
        rules = _TABLE_RULES.get(cls)

        def structure_table(value: Any, _: type) -> Any:
            if not isinstance(value, dict):
                raise ValueError("expected a table ([name] section or { key = value })")
            obj = base(value, cls)
            if rules:
                check_values(obj, rules)
            return obj
        return structure_table

    def is_tuple(t: Any) -> bool:
        args = get_args(t)
        return get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis

    def structure_tuple(value: Any, t: Any) -> tuple[Any, ...]:
        item = get_args(t)[0]
        if not isinstance(value, list):
            raise ValueError("expected an array of tables (one [[key]] section each)"
                             if attrs.has(item) else "expected an array, such as [\"a\", \"b\"]")
        if len(value) > _MAX_ITEMS:
            raise ValueError(f"{len(value)} items; at most {_MAX_ITEMS} are allowed here")
        return tuple(conv.structure(value, list[item]))  # type: ignore[valid-type]

    def structure_options(value: Any, _: type) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("expected a table ({ key = value })")
        level: list[Any] = [value]
        depth = 0
        while level:
            depth += 1
            if depth > _MAX_OPTIONS_DEPTH:
                raise ValueError(f"nested more than {_MAX_OPTIONS_DEPTH} levels deep; the "
                                 f"provider's options are a flat table")
            level = [v for item in level for v in (item.values() if isinstance(item, dict)
                                                   else item) if isinstance(v, dict | list)]
        return dict(value)

    conv.register_structure_hook_factory(attrs.has, table_hook)
    conv.register_structure_hook_func(is_tuple, structure_tuple)
    conv.register_structure_hook_func(lambda t: t == dict[str, Any], structure_options)
    return conv


converter = _make_converter()


def _flatten(exc: BaseException, path: str, value: Any, out: list[str]) -> None:
    """Turn cattrs' exception groups into ``path: problem (got value)`` lines."""
    if isinstance(exc, BadValues):
        out.extend(f"{path}.{key}: {problem} (got {shown})".lstrip(".")
                   for key, shown, problem in exc.items)
        return
    if isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            allowed = ", ".join(f.name for f in attrs.fields(exc.cl)
                                if not f.name.startswith("_") and (exc.cl, f.name) != (Config,
                                                                                     "source"))
            shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _shown(key)
            out.append(f"{path}.{shown}: unknown key; allowed keys here: {allowed}".lstrip("."))
        return
    if isinstance(exc, ClassValidationError | IterableValidationError):
        handled, _ = exc.group_exceptions()
        for sub, note in handled:
            name = getattr(note, "name", None)
            index = getattr(note, "index", None)
            if name is not None:
                sub_path = f"{path}.{name}"
                sub_value = value.get(name) if isinstance(value, dict) else None
            else:
                sub_path = f"{path}[{index}]"
                sub_value = value[index] if isinstance(value, list) and index is not None else None
            _flatten(sub, sub_path, sub_value, out)
        seen = {id(h) for h, _ in handled}
        for sub in exc.exceptions:
            if id(sub) not in seen:
                _flatten(sub, path, value, out)
        return
    if isinstance(exc, KeyError):
        out.append(f"{path}: required key is missing".lstrip("."))
        return
    reason = str(exc)
    if "not in literal" in reason:
        reason = "not one of the allowed values"
    shown = ("a value, hidden" if path.endswith(".password") else
             f"{len(value)} items" if isinstance(value, list) and len(value) > 10 else
             _shown(value))
    out.append(f"{path.lstrip('.')}: {reason} (got {shown})")


def _enum_hint(problems: list[str]) -> list[str]:
    hints = {"security": "ssl, starttls or none", "kind": "internal or external",
             "auth": "password, xoauth2 or none", "protocol": "imap or pop3",
             "window": "rolling or calendar", "processed": "flag, move, delete or none",
             "locale": "en or ru"}
    fixed = []
    for line in problems:
        key = line.split(":", 1)[0].rsplit(".", 1)[-1]
        if key in hints and "expected" not in line:
            line = f"{line}; expected {hints[key]}"
        fixed.append(line)
    return fixed


def parse_config(data: dict[str, Any], source: str = "<memory>") -> Config:
    """Structure a parsed TOML document into :class:`Config`, or raise ConfigError."""
    try:
        config = converter.structure(data, Config)
    except (ClassValidationError, ForbiddenExtraKeysError, ValueError, ConfigError) as exc:
        problems: list[str] = []
        _flatten(exc, "", data, problems)
        if len(problems) > _MAX_PROBLEMS:
            problems[_MAX_PROBLEMS:] = [f"... and {len(problems) - _MAX_PROBLEMS} more problems"]
        raise ConfigError([f"{source}: {p}" for p in _enum_hint(problems)]) from None
    config = attrs.evolve(config, source=source).with_files_beside()
    if problems := check_files(config):
        raise ConfigError([f"{source}: {p}" for p in problems])
    return config


def check_files(config: Config) -> list[str]:
    """Every file the config names, checked now: the store's directory and format, each
    ``ca_file`` (a readable PEM bundle) and each ``password_file`` that would be read."""
    problems = _check_store(config.store_location)
    tables: list[tuple[str, ServerConfig | BouncesConfig]] = [
        (f"servers[{s.name}]", s) for s in config.servers]
    if config.bounces is not None:
        tables.append(("bounces", config.bounces))
    for where, table in tables:
        if table.ca_file:
            problems.extend(_check_ca_file(table.ca_file, f"{where}.ca_file"))
        if table.password_file and table.password is None and not table.password_env:
            try:
                read_password_file(table.password_file, f"{where}.password_file")
            except ConfigError as exc:
                problems.extend(exc.problems)
    return problems


def _check_store(location: str) -> list[str]:
    key = "deployment.store"
    if "://" in location:
        if location.startswith(("postgresql://", "postgres://")):
            return []
        return [f"{key}: unsupported URL {location.partition('://')[0]!r}://; use a SQLite "
                f"file path or a postgresql:// URL"]
    path = Path(location)
    try:
        if path.is_dir():
            return [f"{key}: {location!r} is a directory; name a file in it, such as "
                    f"store = \"{path / 'mailfleet.db'}\""]
        if not path.parent.is_dir():
            return [f"{key}: the directory {str(path.parent)!r} does not exist; create it, or "
                    f"point store at a file in an existing directory"]
        if not path.exists():
            return []
        if not path.is_file():
            return [f"{key}: {location!r} is not a regular file; point store at a SQLite "
                    f"database file"]
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        return [f"{key}: cannot read {location!r} ({exc.strerror or exc}); check the path and "
                f"its permissions"]
    if head and head != _SQLITE_MAGIC:
        return [f"{key}: {location!r} is not a SQLite database; point store at the mailfleet "
                f"database or at a new file name"]
    return []


def _check_ca_file(file: str, key: str) -> list[str]:
    path = Path(file)
    fix = "point it at the PEM file of the CA that signed the server's certificate"
    try:
        if not path.exists():
            return [f"{key}: {file!r} does not exist; {fix}"]
        if not path.is_file():
            return [f"{key}: {file!r} is not a regular file; {fix}"]
        if path.stat().st_size > _MAX_CA_BYTES:
            return [f"{key}: {file!r} is over {_MAX_CA_BYTES // 2**20} MiB, not a certificate "
                    f"file; {fix}"]
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except ssl.SSLError:
        return [f"{key}: {file!r} holds no PEM certificate; {fix} (convert a DER one with "
                f"openssl x509 -inform der -in CERT -out ca.pem)"]
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return [f"{key}: cannot read {file!r} ({reason}); check the path and its permissions"]
    return []


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file: ``explicit``, else ``$MAILFLEET_CONFIG``, else ``./mailfleet.toml``."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or "mailfleet.toml")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and structure the TOML config file."""
    file = config_path(path)
    return parse_config(_read_toml(file), str(file))


def _read_toml(file: Path) -> dict[str, Any]:
    """The TOML document in ``file``, or a ConfigError saying what the file is and the fix."""
    try:
        with file.open("rb") as handle:
            data = handle.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigFileError(str(file), "missing", f"{file}: no such file; give the path of "
                              f"the config file or set {CONFIG_ENV}") from None
    except IsADirectoryError:
        raise ConfigFileError(str(file), "directory", f"{file}: is a directory; give the "
                              f"config file itself, such as {file / 'mailfleet.toml'}"
                              ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror or exc}); check the path and "
                          f"its permissions") from None
    if len(data) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{file}: over {_MAX_CONFIG_BYTES // 2**20} MiB, not a config file; "
                          f"pass the mailfleet.toml file")
    if b"\x00" in data:
        raise ConfigError(f"{file}: a binary file, not a TOML config; pass the mailfleet.toml "
                          f"file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{file}: not UTF-8 text (byte {data[exc.start]:#04x} on line "
                          f"{line}){_encoding_hint(data)}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except ValueError:
        raise ConfigError(f"{file}: not valid TOML: a number has too many digits") from None
    except RecursionError:
        raise ConfigError(f"{file}: not valid TOML: arrays or tables nested too deeply") \
            from None


def _encoding_hint(data: bytes) -> str:
    try:
        text = data.decode("cp1251")
    except UnicodeDecodeError:
        return "; save it as UTF-8"
    if re.search("[\u0400-\u04ff]{3}", text):  # Russian words, not one stray letter
        return ("; it looks like Windows-1251 (CP1251): save it as UTF-8, e.g. "
                "iconv -f cp1251 -t utf-8")
    return "; save it as UTF-8"


def structure_section(data: Any, cls: type[T], path: str) -> T:
    """``data`` structured into the attrs class ``cls`` (a plugin's options schema), or
    ConfigError naming each bad key under ``path`` with the fix."""
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        problems: list[str] = []
        _flatten(exc, "", data, problems)
        fields = [f.name for f in attrs.fields(cls)]  # type: ignore[arg-type]
        lines = []
        for line in problems:
            if line.startswith(": "):  # a validator's own "name: problem; fix"
                line = line[2:].rsplit(" (got {", 1)[0]
            key = line.split(":", 1)[0].split(".", 1)[0]
            near = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {near[0]}?" if "unknown key" in line and near else ""
            lines.append(f"{path}.{line}{hint}")
        raise ConfigError(lines) from None
    except (ValueError, TypeError) as exc:  # a schema validator: "name: problem; fix"
        raise ConfigError(f"{path}.{exc}") from None
