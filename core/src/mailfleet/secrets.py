"""Secrets by reference: a password is read from the environment or a file when needed."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs

from mailfleet.errors import ConfigError


@attrs.frozen(repr=False)
class Secret:
    """A secret string whose repr and str never show it."""

    _value: str = attrs.field(alias="value")

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@attrs.frozen
class SecretRef:
    """Where a password lives: ``env`` (a variable name), ``file`` (a path) or ``inline``.

    ``where`` is the config path used in error messages (``servers[office]``).
    """

    where: str
    env: str | None = None
    file: str | None = None
    inline: Secret | None = None

    @property
    def present(self) -> bool:
        return bool(self.env or self.file or self.inline)

    def read(self) -> Secret | None:
        """The secret, or ``None`` when none is configured; a missing source is a ConfigError."""
        if self.inline is not None:
            return self.inline
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(
                    f"{self.where}.password_env: the environment variable {self.env} is not set; "
                    f"export it or point password_file at a file holding the password"
                )
            if not value:
                raise ConfigError(
                    f"{self.where}.password_env: the environment variable {self.env} is empty; "
                    f"put the password in it (an empty password is never sent)"
                )
            return Secret(value)
        if self.file:
            path = Path(self.file).expanduser()
            try:
                return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
            except OSError as exc:
                raise ConfigError(
                    f"{self.where}.password_file: cannot read {str(path)!r} ({exc.strerror}); "
                    f"check the path and its permissions"
                ) from None
        return None


MASK = "***"


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``: a server's refusal
    may echo the password (or the AUTH payload carrying it) back. Longest secrets first, so a
    secret that contains another is masked whole."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
