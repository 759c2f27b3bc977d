"""Secrets by reference: a password is read from the environment or a file when needed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from mailfleet.errors import ConfigError

MASK = "***"
_MAX_PASSWORD_FILE = 64 * 1024


class Secret:
    """A secret string whose repr and str never show it.

    Deliberately not an attrs class: ``attrs.asdict``, ``attrs.astuple`` and any cattrs
    converter see an opaque value (the shared converter unstructures it to ``"***"``), so no
    generic walk over a config, a server or a mailbox's settings can pull the password out.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Secret is immutable")

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    __str__ = __repr__


@attrs.frozen
class SecretRef:
    """Where a password lives: ``env`` (a variable name), ``file`` (a path) or ``inline``;
    ``host``: a callback into the host application's secret store, asked first at each
    use (``None`` from it falls back to the others).

    ``where`` is the config path used in error messages (``servers[office]``).
    """

    where: str
    env: str | None = None
    file: str | None = None
    inline: Secret | None = None
    host: Callable[[], str | Secret | None] | None = attrs.field(default=None, eq=False)

    @property
    def present(self) -> bool:
        return bool(self.env or self.file or self.inline or self.host)

    def read(self) -> Secret | None:
        """The secret, or ``None`` when none is configured; a missing, unreadable or empty
        source is a ConfigError naming the key and the fix."""
        if self.host is not None and (found := self._from_host()) is not None:
            return found
        if self.inline is not None:
            return self.inline
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(
                    f"{self.where}.password_env: the environment variable {self.env} is not set; "
                    f"export it or point password_file at a file holding the password"
                )
            if not value.strip():
                raise ConfigError(
                    f"{self.where}.password_env: the environment variable {self.env} is empty; "
                    f"export the password in it (an empty password is never sent)"
                )
            return Secret(value)
        if self.file:
            return Secret(read_password_file(self.file, f"{self.where}.password_file"))
        return None

    def _from_host(self) -> Secret | None:
        assert self.host is not None
        try:
            value = self.host()
        except Exception as exc:  # its message may hold the secret: only the type is shown
            raise ConfigError(f"{self.where}: the host application's secret store failed "
                              f"({type(exc).__name__}); check that it holds this password"
                              ) from None
        if value is None:
            return None
        text = value.reveal() if isinstance(value, Secret) else value
        if not isinstance(text, str) or not text.strip() or any(c in text for c in "\r\n\x00"):
            raise ConfigError(f"{self.where}: the host application's secret store gave an "
                              f"empty or multi-line password; store the password on one line")
        return Secret(text)


MASK = "***"


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``: a server's refusal
    may echo the password (or the AUTH payload carrying it) back. Longest secrets first, so a
    secret that contains another is masked whole."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def read_password_file(file: str, key: str) -> str:
    """The password held in ``file`` (one line, UTF-8, the final newline dropped), or a
    ConfigError naming ``key``, the path and the fix; the content never enters the error."""
    path = Path(file).expanduser()
    shown = repr(str(path))
    try:
        if path.is_dir():
            raise ConfigError(f"{key}: {shown} is a directory; point it at the file that "
                              f"holds the password")
        with path.open("rb") as handle:
            data = handle.read(_MAX_PASSWORD_FILE + 1)
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot read {shown} ({exc.strerror or exc}); check the path and its "
            f"permissions"
        ) from None
    if len(data) > _MAX_PASSWORD_FILE:
        raise ConfigError(f"{key}: {shown} is over {_MAX_PASSWORD_FILE // 1024} KiB, not a "
                          f"password file; point it at the file that holds only the password")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{key}: {shown} is not UTF-8 text (byte {data[exc.start]:#04x} at offset "
            f"{exc.start}); save the password file as UTF-8"
        ) from None
    value = text.rstrip("\r\n")
    if not value.strip():
        raise ConfigError(f"{key}: {shown} is empty; write the password in it (an empty "
                          f"password is never sent)")
    if any(c in value for c in "\r\n\x00"):
        raise ConfigError(f"{key}: {shown} holds more than one line; the file must hold the "
                          f"password alone, on one line")
    return value
