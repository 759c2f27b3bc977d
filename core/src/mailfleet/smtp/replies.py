"""SMTP replies: reading them off the wire and splitting code, enhanced status and text."""

from __future__ import annotations

import re

import attrs

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")


@attrs.frozen
class Reply:
    """One (possibly multi-line) SMTP reply."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The reply text, lines joined by a space, the enhanced status kept."""
        return " ".join(self.lines)

    @property
    def enhanced_status(self) -> str | None:
        match = _ENHANCED.match(self.lines[0]) if self.lines else None
        return match.group(1) if match else None

    @property
    def message(self) -> str:
        """The text without the repeated enhanced status codes of continuation lines."""
        parts = []
        for line in self.lines:
            match = _ENHANCED.match(line)
            parts.append(line[match.end():] if match else line)
        return " ".join(p for p in parts if p).strip()

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400


def parse_reply_lines(raw_lines: list[bytes]) -> Reply:
    """Build a reply from its lines (``250-a``, ``250 b``); malformed input raises ValueError."""
    if len(raw_lines) == 1:  # most replies: one line, no loop
        line = raw_lines[0].decode("utf-8", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise ValueError(f"malformed SMTP reply line {line[:80]!r}")
        return Reply(int(line[:3]), (line[4:],))
    code = None
    lines = []
    for raw in raw_lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise ValueError(f"malformed SMTP reply line {line[:80]!r}")
        code = int(line[:3])
        lines.append(line[4:])
    if code is None:
        raise ValueError("empty SMTP reply")
    return Reply(code, tuple(lines))


def is_last_line(raw: bytes) -> bool:
    """True for the final line of a reply (``250 ok`` rather than ``250-more``)."""
    return len(raw) < 4 or raw[3:4] != b"-"
