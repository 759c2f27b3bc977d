"""Mailing templates: the TOML format, merge fields, and compilation into byte pieces.

A template is compiled once per mailing and sender (the From a server really uses) into the
bytes of the MIME structure: headers, boundaries, literal text already encoded. Rendering a
letter only substitutes the recipient's values (HTML-escaped in the HTML part, RFC 2047 encoded
in the Subject, percent-encoded in the unsubscribe URL), the Message-ID, the Date and the
``X-Mailfleet-Letter-Id`` header. Bodies go as 7bit when the letter is ASCII, else as
quoted-printable; literal text is encoded at compile time, each value at render time, joined
by soft line breaks.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import secrets
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs

from mailfleet.addresses import normalize_address
from mailfleet.errors import AddressError, TemplateError
from mailfleet.message import LETTER_ID_HEADER

FIELD = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")
_RESERVED = {"from", "to", "subject", "message-id", "date", "mime-version", "content-type",
             "content-transfer-encoding", "sender", "return-path", "list-unsubscribe",
             "list-unsubscribe-post", LETTER_ID_HEADER.lower()}
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
_KEYS = ("subject", "text", "html", "sender", "sender_name", "headers", "unsubscribe_url",
         "unsubscribe_mailto")
_MAX_RAW_LINE = 900


@attrs.frozen
class Template:
    """What every letter of a mailing says; ``{{ field }}`` marks a merge field."""

    subject: str
    text: str
    html: str | None = None
    sender: str = ""
    sender_name: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None

    @property
    def fields(self) -> frozenset[str]:
        """Every merge field used anywhere (``email`` is always available)."""
        found: set[str] = set()
        for part in (self.subject, self.text, self.html or "", self.unsubscribe_url or ""):
            found.update(FIELD.findall(part))
        return frozenset(found)

    @property
    def header_fields(self) -> frozenset[str]:
        """Merge fields that land in a header (their values must not hold CR/LF)."""
        return frozenset(FIELD.findall(self.subject + (self.unsubscribe_url or "")))

    def problems(self) -> list[str]:
        """Everything wrong with the template itself, each naming the key."""
        out: list[str] = []
        if not self.subject.strip():
            out.append("subject: required and must not be empty")
        if self.sender:
            try:
                normalize_address(self.sender)
            except AddressError as exc:
                out.append(f"sender: {exc}")
        for key, value in (("subject", self.subject), ("sender_name", self.sender_name),
                           ("unsubscribe_url", self.unsubscribe_url or ""),
                           ("unsubscribe_mailto", self.unsubscribe_mailto or "")):
            if any(c in value for c in "\r\n\0"):
                out.append(f"{key}: CR, LF and NUL are not allowed (header injection)")
        for name, value in self.headers:
            if not _HEADER_NAME.match(name) or name.lower() in _RESERVED:
                out.append(f"headers.{name}: not allowed as an extra header (reserved or "
                           f"malformed name)")
            if any(c in value for c in "\r\n\0"):
                out.append(f"headers.{name}: CR, LF and NUL are not allowed in a header value")
        if self.unsubscribe_url and not self.unsubscribe_url.lower().startswith("https://"):
            out.append("unsubscribe_url: RFC 8058 one-click unsubscribe needs an https:// URL")
        if self.unsubscribe_mailto:
            try:
                normalize_address(self.unsubscribe_mailto.removeprefix("mailto:")
                                  .partition("?")[0])
            except AddressError as exc:
                out.append(f"unsubscribe_mailto: {exc}")
        return out

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["headers"] = dict(self.headers)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "template") -> Template:
        """Build and check a template; raises TemplateError listing every problem."""
        problems = [f"{key}: unknown key; allowed keys: {', '.join(_KEYS)}"
                    for key in data if key not in _KEYS]
        for key in ("subject", "text"):
            if not isinstance(data.get(key), str):
                problems.append(f"{key}: required (a string)")
        for key in ("html", "sender", "sender_name", "unsubscribe_url", "unsubscribe_mailto"):
            if data.get(key) is not None and not isinstance(data[key], str):
                problems.append(f"{key}: expected a string")
        headers = data.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            problems.append("headers: expected a table of name = \"value\" strings")
            headers = {}
        if problems:
            raise TemplateError(f"{source}: " + "; ".join(problems))
        template = cls(subject=data["subject"], text=data["text"], html=data.get("html"),
                       sender=data.get("sender") or "", sender_name=data.get("sender_name") or "",
                       headers=tuple(headers.items()),
                       unsubscribe_url=data.get("unsubscribe_url") or None,
                       unsubscribe_mailto=data.get("unsubscribe_mailto") or None)
        problems = template.problems()
        if problems:
            raise TemplateError(f"{source}: " + "; ".join(problems))
        if template.sender:
            template = attrs.evolve(template, sender=normalize_address(template.sender))
        return template


def load_template(path: str | Path) -> Template:
    """Read a TOML template file (keys: subject, text, html, sender, sender_name, headers,
    unsubscribe_url, unsubscribe_mailto)."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(f"{file}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{file}: not valid TOML: {exc}") from None
    return Template.from_dict(data, str(file))


# -- encoding helpers ---------------------------------------------------------------------
def encode_words(text: str, room: int = 60) -> str:
    """RFC 2047 ``=?utf-8?b?...?=`` words, split on character boundaries, folded."""
    words: list[str] = []
    chunk = bytearray()
    limit = (room - 12) // 4 * 3
    for char in text:
        raw = char.encode("utf-8")
        if len(chunk) + len(raw) > limit:
            words.append(chunk.decode("utf-8"))
            chunk = bytearray()
        chunk += raw
    words.append(chunk.decode("utf-8"))
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words)


def header_text(value: str) -> bytes:
    """A header value as bytes: as is when ASCII and short, else RFC 2047 encoded."""
    if value.isascii() and len(value) < _MAX_RAW_LINE:
        return value.encode("ascii")
    return encode_words(value).encode("ascii")


def _qp(data: str) -> bytes:
    """Quoted-printable of ``data`` with CRLF line ends, ending with a soft line break so the
    next piece starts on a fresh line (an empty string stays empty)."""
    if not data:
        return b""
    enc = binascii.b2a_qp(data.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    if data.endswith("\n"):
        return enc
    last = enc.rfind(b"\n") + 1
    while len(enc) - last > 74:  # keep room for the soft break "="
        cut = last + 73
        while enc[cut - 1:cut] == b"=" or enc[cut - 2:cut - 1] == b"=":
            cut -= 1
        enc = enc[:cut] + b"=\r\n" + enc[cut:]
        last = cut + 3
    return enc + b"=\r\n"


def _raw(data: str) -> bytes:
    return data.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii")


def _split(text: str) -> tuple[list[str], list[str]]:
    """Literal pieces and the field names between them (``len(literals) == len(names)+1``)."""
    literals: list[str] = []
    names: list[str] = []
    pos = 0
    for match in FIELD.finditer(text):
        literals.append(text[pos:match.start()])
        names.append(match.group(1))
        pos = match.end()
    literals.append(text[pos:])
    return literals, names


def _long_lines(text: str) -> bool:
    return any(len(line) > _MAX_RAW_LINE for line in text.split("\n"))


class _Body:
    """One text part compiled: raw (7bit) and quoted-printable literal pieces."""

    def __init__(self, text: str, *, escape: bool) -> None:
        text = text.replace("\r\n", "\n")
        self.literals, self.names = _split(text)
        self.unique = frozenset(self.names)
        self.ascii = text.isascii() and not _long_lines(text)
        self.raw = [_raw(p) for p in self.literals] if self.ascii else []
        self.qp = [_qp(p) for p in self.literals]
        self.escape = escape
        if self.qp[-1] and not self.qp[-1].endswith(b"\r\n"):
            self.qp[-1] += b"\r\n"
        elif self.qp[-1].endswith(b"=\r\n"):
            self.qp[-1] = self.qp[-1][:-3] + b"\r\n"

    def render(self, fields: Mapping[str, str]) -> tuple[bool, bytes]:
        """``(is_7bit, body bytes)``; each distinct field is escaped and encoded once."""
        values = {name: str(fields.get(name, "")) for name in self.unique}
        if self.escape:
            values = {name: html.escape(v) for name, v in values.items()}
        if self.ascii and all(v.isascii() and len(v) < 200 for v in values.values()):
            raw = {n: _raw(v) if "\n" in v else v.encode("ascii") for n, v in values.items()}
            out = [self.raw[0]]
            for name, piece in zip(self.names, self.raw[1:], strict=True):
                out.append(raw[name])
                out.append(piece)
            body = b"".join(out)
            return True, body if body.endswith(b"\r\n") else body + b"\r\n"
        encoded = {name: _qp(v) for name, v in values.items()}
        parts = [self.qp[0]]
        for name, piece in zip(self.names, self.qp[1:], strict=True):
            parts.append(encoded[name])
            parts.append(piece)
        body = b"".join(parts)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        elif body.endswith(b"=\r\n"):
            body = body[:-3] + b"\r\n"
        return False, body


_CTE = {True: b"Content-Transfer-Encoding: 7bit\r\n\r\n",
        False: b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"}


class CompiledTemplate:
    """A template compiled for one From; :meth:`render` makes one letter's bytes."""

    def __init__(self, template: Template, *, from_addr: str, from_name: str = "") -> None:
        self.template = template
        from_addr = normalize_address(from_addr)
        head = [b"From: " + formataddr((from_name, from_addr), charset="utf-8").encode()
                + b"\r\n"]
        self._head = b"".join(head)
        self._subject_literals, self._subject_names = _split(template.subject)
        self._subject = (None if self._subject_names
                         else b"Subject: " + header_text(template.subject) + b"\r\n")
        self._url_literals, self._url_names = _split(template.unsubscribe_url or "")
        tail = []
        if template.unsubscribe_url is None and template.unsubscribe_mailto:
            tail.append(b"List-Unsubscribe: <" + self._mailto() + b">\r\n")
        for name, value in template.headers:
            tail.append(name.encode("ascii") + b": " + header_text(value) + b"\r\n")
        tail.append(b"MIME-Version: 1.0\r\n")
        self._text = _Body(template.text, escape=False)
        self._html = _Body(template.html, escape=True) if template.html is not None else None
        text_type = b'Content-Type: text/plain; charset="utf-8"\r\n'
        if self._html is None:
            self._tail = b"".join(tail) + text_type
            self._between = b""
            self._end = b""
        else:
            boundary = f"=_mf_{secrets.token_hex(12)}".encode()
            tail.append(b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n'
                        b"\r\n--" + boundary + b"\r\n" + text_type)
            self._tail = b"".join(tail)
            self._between = (b"\r\n--" + boundary + b"\r\n"
                             b'Content-Type: text/html; charset="utf-8"\r\n')
            self._end = b"\r\n--" + boundary + b"--\r\n"

    def _mailto(self) -> bytes:
        mailto = self.template.unsubscribe_mailto or ""
        if not mailto.startswith("mailto:"):
            mailto = f"mailto:{mailto}"
        if "?" not in mailto:
            mailto += "?subject=unsubscribe"
        return mailto.encode("ascii")

    def subject(self, fields: Mapping[str, str]) -> bytes:
        if self._subject is not None:
            return self._subject
        out = [self._subject_literals[0]]
        for name, piece in zip(self._subject_names, self._subject_literals[1:], strict=True):
            out.append(str(fields.get(name, "")))
            out.append(piece)
        return b"Subject: " + header_text("".join(out)) + b"\r\n"

    def unsubscribe(self, fields: Mapping[str, str]) -> bytes:
        if not self.template.unsubscribe_url:
            return b""
        out = [self._url_literals[0]]
        for name, piece in zip(self._url_names, self._url_literals[1:], strict=True):
            out.append(quote(str(fields.get(name, "")), safe=""))
            out.append(piece)
        value = b"<" + "".join(out).encode("ascii", "strict") + b">"
        if self.template.unsubscribe_mailto:
            value += b",\r\n <" + self._mailto() + b">"
        return (b"List-Unsubscribe: " + value + b"\r\n"
                b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")

    def render(self, *, to: str, fields: Mapping[str, str], letter_id: str, message_id: str,
               date: bytes) -> bytes:
        """The letter's bytes (CRLF line ends, not yet dot-stuffed)."""
        seven, text = self._text.render(fields)
        parts = [self._head, b"To: ", to.encode("ascii"), b"\r\n", self.subject(fields),
                 b"Date: ", date, b"\r\nMessage-ID: ", message_id.encode("ascii"),
                 b"\r\n" + LETTER_ID_HEADER.encode() + b": ", letter_id.encode("ascii"),
                 b"\r\n", self.unsubscribe(fields), self._tail, _CTE[seven], text]
        if self._html is not None:
            seven, body = self._html.render(fields)
            parts += [self._between, _CTE[seven], body, self._end]
        return b"".join(parts)


class DateCache:
    """RFC 5322 Date values, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self, now: float) -> bytes:
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = format_datetime(datetime.fromtimestamp(second, UTC)).encode()
        return self._value
