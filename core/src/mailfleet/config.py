"""The configuration file: attrs models, one cattrs converter, readable errors.

Loading turns TOML into these frozen models; any unknown key or bad value is a
:class:`~mailfleet.errors.ConfigError` naming the key path, the bad value and the expected
form. Presets from provider plugins are applied later, by :mod:`mailfleet.servers`.
"""

from __future__ import annotations

import enum
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from mailfleet.errors import ConfigError
from mailfleet.providers import Limits, Security
from mailfleet.retry import RetryPolicy
from mailfleet.secrets import Secret, SecretRef

CONFIG_ENV = "MAILFLEET_CONFIG"


def _lease_seconds(value: float) -> None:
    if not 0.5 <= value < 86_400:  # also refuses nan
        raise ValueError(f"lease_seconds = {value!r}: expected seconds between 0.5 and "
                         f"86400, e.g. 15")


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
    lease_seconds: float = attrs.field(default=15.0, validator=lambda _, __, value: (
        _lease_seconds(value)))
    in_doubt: Literal["resend", "hold"] = "resend"


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
    timeout: float = 30.0
    allow_sender_override: bool | None = None
    aliases: tuple[str, ...] = ()
    priority: int = 100
    limits: Limits = attrs.field(factory=Limits)
    connections: int = 2
    tls_verify: bool = True
    ca_file: str | None = None
    allow_insecure_auth: bool = False
    operator_default: bool = False
    enabled: bool = True
    options: dict[str, Any] = attrs.field(factory=dict)

    def secret_ref(self, where: str) -> SecretRef:
        return SecretRef(where, env=self.password_env, file=self.password_file,
                         inline=self.password)


@attrs.frozen
class BouncesConfig:
    """The mailbox that receives bounce reports (read by ``mailfleet bounces fetch``).

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

    def secret_ref(self) -> SecretRef:
        return SecretRef("bounces", env=self.password_env, file=self.password_file,
                         inline=self.password)


@attrs.frozen
class Config:
    """The whole configuration file."""

    deployment: Deployment = attrs.field(factory=Deployment)
    servers: tuple[ServerConfig, ...] = ()
    bounces: BouncesConfig | None = None
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    source: str = attrs.field(default="<memory>", eq=False)


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
        return float(value)

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
    return conv


converter = _make_converter()


def _flatten(exc: BaseException, path: str, value: Any, out: list[str]) -> None:
    """Turn cattrs' exception groups into ``path: problem (got value)`` lines."""
    if isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            allowed = ", ".join(f.name for f in attrs.fields(exc.cl) if not f.name.startswith("_"))
            out.append(f"{path}.{key}: unknown key; allowed keys here: {allowed}".lstrip("."))
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
        for sub in exc.exceptions:
            if not any(sub is h for h, _ in handled):
                _flatten(sub, path, value, out)
        return
    if isinstance(exc, KeyError):
        out.append(f"{path}: required key is missing".lstrip("."))
        return
    reason = str(exc)
    if "not in literal" in reason:
        reason = "not one of the allowed values"
    out.append(f"{path.lstrip('.')}: {reason} (got {value!r})")


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
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        problems: list[str] = []
        _flatten(exc, "", data, problems)
        raise ConfigError([f"{source}: {p}" for p in _enum_hint(problems)]) from None
    return attrs.evolve(config, source=source)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file: ``--config``, else ``$MAILFLEET_CONFIG``, else ``./mailfleet.toml``."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or "mailfleet.toml")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and structure the TOML config file."""
    file = config_path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: no such file; pass --config PATH or set {CONFIG_ENV}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_config(data, str(file))
