"""Defensive MIME helpers: walk a message with limits and decode any part to text."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage, Message

MAX_BYTES = 512 * 1024
"""Only this much of a message is parsed; the rest is ignored."""
MAX_PARTS = 200
MAX_DEPTH = 8
MAX_TEXT = 300 * 1024
"""Only this much decoded text of one part is kept."""

FALLBACK_CHARSETS = ("utf-8", "cp1251", "koi8-r", "latin-1")
_ALIASES = {"x-unknown": "latin-1", "unknown-8bit": "latin-1", "us-ascii": "utf-8",
            "ascii": "utf-8", "iso-8859-8-i": "iso-8859-8", "x-sjis": "shift_jis",
            "ks_c_5601-1987": "euc-kr", "gb2312": "gb18030", "gbk": "gb18030"}


def parse_raw(raw: bytes) -> EmailMessage:
    """Parse (the first :data:`MAX_BYTES` of) ``raw`` with ``email.policy.default``."""
    msg = email.message_from_bytes(raw[:MAX_BYTES], policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode ``data`` with ``charset``, falling back to utf-8, cp1251, koi8-r, latin-1."""
    data = data[:MAX_TEXT]
    tried: list[str] = []
    if charset:
        cs = charset.strip().strip('"').lower()
        tried.append(_ALIASES.get(cs, cs))
    for cs in (*tried, *FALLBACK_CHARSETS):
        try:
            return data.decode(cs)
        except (LookupError, UnicodeError, ValueError):
            continue
    return data.decode("latin-1", "replace")


def header(msg: Message, name: str) -> str:
    """The header ``name`` as a plain string ('' when absent or unreadable)."""
    try:
        value = msg.get(name)
    except Exception:  # broken header: fall back to the raw value
        value = None
        for key, raw in msg.raw_items() if hasattr(msg, "raw_items") else []:
            if key.lower() == name.lower():
                value = raw
                break
    if value is None:
        return ""
    try:
        return " ".join(str(value).split())
    except Exception:
        return ""


def headers_text(msg: Message) -> str:
    """All header fields of ``msg`` as ``Name: value`` lines."""
    lines: list[str] = []
    try:
        items = list(msg.raw_items()) if hasattr(msg, "raw_items") else list(msg.items())
    except Exception:
        return ""
    for key, value in items:
        try:
            lines.append(f"{key}: {' '.join(str(value).split())}")
        except Exception:  # noqa: S112 - skip unreadable fields
            continue
    return "\n".join(lines)


def part_text(part: Message) -> str:
    """The decoded text of a leaf part (any charset; never raises)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        try:
            charset = part.get_content_charset()
        except Exception:
            charset = None
        return decode_bytes(payload, charset)
    try:
        raw = part.get_payload()
    except Exception:
        return ""
    if isinstance(raw, str):
        return raw[:MAX_TEXT]
    if isinstance(raw, list):
        chunks = [headers_text(sub) for sub in raw if isinstance(sub, Message)]
        return "\n\n".join(chunks)
    return ""


def content_type(part: Message) -> str:
    """The part's content type in lower case (``text/plain`` when unreadable)."""
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"


def walk(msg: Message) -> Iterator[tuple[Message, int, bool]]:
    """Yield ``(part, depth, inside_returned_message)`` with part and depth limits."""
    count = 0

    def _walk(part: Message, depth: int, inside: bool) -> Iterator[tuple[Message, int, bool]]:
        nonlocal count
        if count >= MAX_PARTS or depth > MAX_DEPTH:
            return
        count += 1
        yield part, depth, inside
        ctype = content_type(part)
        try:
            payload = part.get_payload()
        except Exception:
            return
        if not isinstance(payload, list) or ctype.endswith("delivery-status"):
            return
        child_inside = inside or ctype in {"message/rfc822", "message/global"}
        for sub in payload:
            if isinstance(sub, Message):
                yield from _walk(sub, depth + 1, child_inside)

    yield from _walk(msg, 0, False)
