"""Defensive MIME helpers: walk a message with limits and decode any part to text."""

from __future__ import annotations

import contextlib
import email
import email.header
import email.policy
import weakref
from collections.abc import Iterator
from email.message import Message

from mailfleet.bounces.split import SplitMessage, content_type_of, split_message

MAX_BYTES = 512 * 1024
"""The input budget: only this much of a message is parsed (the report comes first; the
rest is the returned original). The same cap for the mailbox readers, tests and bench."""
MAX_PARTS = 200
MAX_DEPTH = 8
MAX_TEXT = 300 * 1024
"""Only this much decoded text of one part is kept."""

FALLBACK_CHARSETS = ("utf-8", "cp1251", "koi8-r", "latin-1")
_ALIASES = {"x-unknown": "latin-1", "unknown-8bit": "latin-1", "us-ascii": "utf-8",
            "ascii": "utf-8", "iso-8859-8-i": "iso-8859-8", "x-sjis": "shift_jis",
            "ks_c_5601-1987": "euc-kr", "gb2312": "gb18030", "gbk": "gb18030"}


def limit_input(raw: bytes, size: int | None = None) -> tuple[bytes, str | None]:
    """``raw`` cut to :data:`MAX_BYTES` (at a line end), and a note when it was cut.

    ``size`` is the message's full size when the caller read only its first bytes."""
    full = max(len(raw), size or 0)
    if full <= MAX_BYTES:
        return raw, None
    cut = raw[:MAX_BYTES]
    end = cut.rfind(b"\n")
    if end > MAX_BYTES // 2:
        cut = cut[:end + 1]
    return cut, (f"only the first {len(cut):,} of {full:,} bytes were read "
                 f"(the input budget is {MAX_BYTES:,} bytes)")


def parse_raw(raw: bytes) -> Message:
    """Parse ``raw`` (already within the budget) into the tree ``email`` builds with the
    ``compat32`` policy (header values stay raw strings until :func:`header` reads one),
    with the fast splitter; the email package itself if the splitter fails."""
    try:
        return split_message(raw)
    except RecursionError:
        raise
    except Exception:  # a case the splitter does not handle: the reference parser
        return email.message_from_bytes(raw, policy=email.policy.compat32)


def parse_flat(raw: bytes) -> Message:
    """Headers only, the whole body as one text part: for a MIME structure the email
    package cannot build (nested deeper than the interpreter's recursion limit)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or b"\n\n" in head:
        head, sep, body = raw.partition(b"\n\n")
    msg = email.message_from_bytes(head + b"\n\n", policy=email.policy.compat32)
    for name in ("Content-Type", "Content-Transfer-Encoding"):
        del msg[name]
    msg.set_payload(body.decode("latin-1")[:MAX_TEXT])
    return msg


def decode_header_value(value: str) -> str:
    """A raw header value as text: unfolded, RFC 2047 encoded words decoded, raw 8-bit
    bytes decoded as UTF-8 (else cp1251, koi8-r, latin-1); never raises."""
    if not value.isascii():
        try:
            value = decode_bytes(value.encode("utf-8", "surrogateescape"))
        except Exception:
            value = value.encode("utf-8", "replace").decode("utf-8", "replace")
    if "=?" in value:
        with contextlib.suppress(Exception):  # a broken encoded word stays as written
            value = str(email.header.make_header(email.header.decode_header(value)))
    return " ".join(value.split())


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


_INDEX: weakref.WeakKeyDictionary[Message, dict[str, list[str]]] = weakref.WeakKeyDictionary()
"""The raw header values by lower-case name of messages the splitter did not build."""


def raw_headers(msg: Message, name: str) -> list[str]:
    """Every raw (undecoded) value of the header ``name`` (an index built once per part;
    the splitter builds it while it parses)."""
    if isinstance(msg, SplitMessage):
        return msg.fields.get(name.lower(), [])
    index = _INDEX.get(msg)
    if index is None:
        index = {}
        try:
            for key, value in msg.raw_items():
                index.setdefault(key.lower(), []).append(str(value))
        except Exception:  # noqa: S110 - an unreadable header list counts as empty
            pass
        _INDEX[msg] = index
    values: list[str] = index.get(name.lower(), [])
    return values


def header(msg: Message, name: str) -> str:
    """The first header ``name``, decoded, as a plain string ('' when absent)."""
    values = raw_headers(msg, name)
    return decode_header_value(values[0]) if values else ""


def headers_text(msg: Message) -> str:
    """All header fields of ``msg`` as ``Name: value`` lines (values as written)."""
    lines: list[str] = []
    try:
        items = list(msg.raw_items())
    except Exception:
        return ""
    for key, value in items:
        try:
            lines.append(f"{key}: {' '.join(str(value).split())}")
        except Exception:  # noqa: S112 - skip unreadable fields
            continue
    return "\n".join(lines)


_TRANSFER_ENCODED = frozenset({"quoted-printable", "base64", "x-uuencode", "uuencode", "uue",
                               "x-uue"})


def _payload_bytes(part: Message) -> object:
    """``part.get_payload(decode=True)``: a splitter's text part that is not transfer-encoded
    is its text's bytes (the email package would first look its encoding up again)."""
    if isinstance(part, SplitMessage):
        payload = vars(part).get("_payload")
        values = part.fields.get("content-transfer-encoding")
        encoding = values[0].lower() if values else ""
        if isinstance(payload, str) and encoding.isascii() and encoding not in _TRANSFER_ENCODED:
            with contextlib.suppress(UnicodeEncodeError):
                return payload.encode("ascii", "surrogateescape")
    return part.get_payload(decode=True)


def content_disposition(part: Message) -> str | None:
    """``part.get_content_disposition()``."""
    if isinstance(part, SplitMessage):
        values = part.fields.get("content-disposition")
        if not values:
            return None
        if values[0].isascii():
            return values[0].partition(";")[0].strip().lower()
    return part.get_content_disposition()


def part_text(part: Message) -> str:
    """The decoded text of a leaf part (any charset; never raises)."""
    try:
        payload = _payload_bytes(part)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        try:
            charset = content_charset(part)
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


def _simple_params(part: Message) -> dict[str, str] | None:
    """The splitter's parts: the Content-Type parameters read from the raw value when it is
    simple (:func:`~mailfleet.bounces.split.simple_params`); None: ask the email package."""
    return part.content_params() if isinstance(part, SplitMessage) else None


def content_param(part: Message, name: str) -> str:
    """``str(part.get_param(name) or "")``."""
    params = _simple_params(part)
    if params is None:
        return str(part.get_param(name) or "")
    return params.get(name) or ""


def content_charset(part: Message) -> str | None:
    """``part.get_content_charset()``."""
    params = _simple_params(part)
    if params is None:
        return part.get_content_charset()
    charset = params.get("charset")
    return charset.lower() if charset is not None else None


def content_type(part: Message) -> str:
    """The part's content type in lower case (``Message.get_content_type``'s rules, read
    from the header index: its default when absent, ``text/plain`` when malformed)."""
    if isinstance(part, SplitMessage):
        return part.content_type()
    try:
        default = part.get_default_type()
    except Exception:
        default = "text/plain"
    return content_type_of(raw_headers(part, "content-type"), default)


def walk(msg: Message) -> Iterator[tuple[Message, str, bool]]:
    """Yield ``(part, content_type, inside_returned_message)`` with part and depth limits
    (depth first, each part before its subparts)."""
    count = 0
    stack: list[tuple[Message, int, bool]] = [(msg, 0, False)]
    while stack and count < MAX_PARTS:
        part, depth, inside = stack.pop()
        if depth > MAX_DEPTH:
            continue
        count += 1
        ctype = content_type(part)
        yield part, ctype, inside
        # a leaf's get_payload() would look up its transfer encoding and re-encode its text
        if not part.is_multipart() or ctype.endswith("delivery-status"):
            continue
        try:
            payload = part.get_payload()
        except Exception:  # noqa: S112 - an unreadable part has no subparts to walk
            continue
        if not isinstance(payload, list):
            continue
        child_inside = inside or ctype in {"message/rfc822", "message/global"}
        stack.extend((sub, depth + 1, child_inside) for sub in reversed(payload)
                     if isinstance(sub, Message))
