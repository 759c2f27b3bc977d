"""Mailing templates: the TOML format, merge fields, and compilation into byte pieces.

A merge field is ``{{ name }}`` (a name in any script: ``{{ Имя }}``). A part made only of
literal text and such plain fields is compiled once per mailing and sender (the From a
server really uses) into the bytes of the MIME structure: headers, boundaries, literal text
already encoded; rendering a letter only substitutes the recipient's values (HTML-escaped in
the HTML part, RFC 2047 encoded in the Subject, percent-encoded in the unsubscribe URL), the
Message-ID, the Date and the ``X-Mailfleet-Letter-Id`` header. A part that uses defaults or
conditions (``{{ name | default("customer") }}``, ``{% if company %}...{% endif %}``) is
rendered by Jinja2's sandboxed environment; an empty value counts as missing there, so a
default also fills an empty cell. Bodies go as 7bit when the letter is ASCII, else as
quoted-printable.
"""

from __future__ import annotations

import base64
import binascii
import functools
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
import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from mailfleet.addresses import header_problem, normalize_address, normalize_domain
from mailfleet.errors import AddressError, TemplateError
from mailfleet.sending.identity import LETTER_ID_HEADER

FIELD = re.compile(r"\{\{\s*([^\W\d]\w*(?:-\w+)*)\s*\}\}")
#: What makes a part more than plain fields: any other tag or comment opener (a stray ``}}``,
#: as in inline CSS, is literal text to Jinja2 too).
_TAGS = re.compile(r"\{[{%#]")
#: ``{ name }}``: a merge field that lost a brace (Jinja2 would send it literally).
_HALF_FIELD = re.compile(r"(?<!\{)\{\s*[^\W\d][\w-]*\s*\}\}")
_RESERVED = {"from", "to", "subject", "message-id", "date", "mime-version", "content-type",
             "content-transfer-encoding", "sender", "return-path", "list-unsubscribe",
             "list-unsubscribe-post", LETTER_ID_HEADER.lower()}
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
_KEYS = ("subject", "text", "html", "sender", "sender_name", "headers", "unsubscribe_url",
         "unsubscribe_mailto")
_MAX_RAW_LINE = 900
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"
_HOW = ('a merge field is {{ name }}; also {{ name | default("text") }} and '
        '{% if name %}...{% endif %}')
#: What a mailing template may use beyond plain fields: output, ``if``/``elif``/``else``,
#: tests and comparisons of fields and constants, and a few string filters. No loops, calls,
#: attribute access or arithmetic: a template renders in time proportional to its length.
_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const,
          nodes.If, nodes.Filter, nodes.Test, nodes.Compare, nodes.Operand, nodes.And,
          nodes.Or, nodes.Not, nodes.CondExpr, nodes.Concat, nodes.Keyword)
_FILTERS = frozenset({"default", "d", "upper", "lower", "title", "capitalize", "trim",
                      "escape", "e"})
_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
_HTML_ENV = SandboxedEnvironment(autoescape=True, keep_trailing_newline=True)


@attrs.frozen
class Part:
    """One template text analysed: ``plain`` (only literal text and ``{{ field }}``), the
    fields it uses, those it cannot do without (``required``: not only under ``default`` or
    in an ``if`` test), and the sandboxed Jinja2 template when it is not plain."""

    plain: bool
    names: frozenset[str]
    required: frozenset[str]
    jinja: jinja2.Template | None = attrs.field(default=None, eq=False)


@functools.lru_cache(maxsize=256)
def analyse(text: str, *, html: bool = False) -> Part:
    """The analysis of one template text; TemplateError for a malformed tag (with its line)."""
    names = frozenset(FIELD.findall(text))
    if not _TAGS.search(FIELD.sub("", text)):
        return Part(True, names, names)
    env = _HTML_ENV if html else _ENV
    try:
        tree = env.parse(text)
        compiled = env.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}; {_HOW}") from None
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _NODES) or (isinstance(node, nodes.Filter)
                                            and node.name not in _FILTERS):
            what = f"the filter {node.name!r}" if isinstance(node, nodes.Filter) else (
                f"{type(node).__name__.lower()} expressions")
            raise TemplateError(f"line {node.lineno}: {what} cannot be used in a mailing "
                                f"template; {_HOW} (filters: {', '.join(sorted(_FILTERS))})")
    used = frozenset(meta.find_undeclared_variables(tree))
    optional: set[str] = set()
    for node in tree.find_all(nodes.Filter):
        if node.name in ("default", "d") and isinstance(node.node, nodes.Name):
            optional.add(node.node.name)
    for branch in tree.find_all(nodes.If):
        test = branch.test
        optional.update(n.name for n in test.find_all(nodes.Name))
        if isinstance(test, nodes.Name):
            optional.add(test.name)
    return Part(False, used, used - optional, compiled)


def ascii_url(url: str) -> str:
    """``url`` with an IDNA host and every other non-ASCII or unsafe character
    percent-encoded; its ``{{ field }}`` marks are kept (their values are encoded at render).
    TemplateError when the host is not a valid name or is itself a merge field."""
    literals, names = _split(url)
    scheme, sep, rest = literals[0].partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if cut == len(rest) and names:
        raise TemplateError("the host must be written out, not a merge field")
    userinfo, at, hostport = rest[:cut].rpartition("@")
    host, colon, port = hostport.partition(":")
    try:
        host = normalize_domain(host)
    except AddressError as exc:
        raise TemplateError(str(exc)) from None
    if port and not port.isdigit():
        raise TemplateError(f"the port {port!r} is not a number")
    head = f"{scheme}://{quote(userinfo, safe=_URL_SAFE)}{at}{host}{colon}{port}"
    pieces = [head + quote(rest[cut:], safe=_URL_SAFE)]
    for name, literal in zip(names, literals[1:], strict=True):
        pieces.append("{{ " + name + " }}")
        pieces.append(quote(literal, safe=_URL_SAFE))
    return "".join(pieces)


def _mailto_value(mailto: str) -> str:
    """``mailto:address?subject=...`` with an IDNA domain and an encoded query."""
    address, mark, query = mailto.removeprefix("mailto:").partition("?")
    address = normalize_address(address)
    if not mark:
        return f"mailto:{address}?subject=unsubscribe"
    return f"mailto:{address}?{quote(query, safe=_URL_SAFE)}"


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

    def parts(self) -> list[tuple[str, Part]]:
        """Each merge-field part by key (raises TemplateError for a malformed one)."""
        out = []
        for key, text, is_html in (("subject", self.subject, False), ("text", self.text, False),
                                   ("html", self.html, True),
                                   ("unsubscribe_url", self.unsubscribe_url, False)):
            if text is not None:
                try:
                    out.append((key, analyse(text, html=is_html)))
                except TemplateError as exc:
                    raise TemplateError(f"{key}: {exc}") from None
        return out

    @property
    def fields(self) -> frozenset[str]:
        """Every merge field used anywhere (``email`` is always available)."""
        return frozenset().union(*(part.names for _, part in self.parts()))

    @property
    def required_fields(self) -> frozenset[str]:
        """Fields every recipient must have (not only under ``default`` or in an ``if``)."""
        return frozenset().union(*(part.required for _, part in self.parts()))

    @property
    def header_fields(self) -> frozenset[str]:
        """Merge fields that land in a header (their values must not hold CR/LF)."""
        return frozenset().union(*(part.names for key, part in self.parts()
                                   if key in ("subject", "unsubscribe_url")))

    def render_problem(self, fields: Mapping[str, str]) -> str | None:
        """Why the parts with defaults or conditions cannot be rendered for ``fields`` (a
        sandbox refusal, a type error), or ``None``; plain parts always render."""
        for key, part in self.parts():
            if part.jinja is None:
                continue
            try:
                part.jinja.render(_present(fields))
            except Exception as exc:
                return f"{key} cannot be rendered: {type(exc).__name__}: {exc}"
        return None

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
            if (problem := header_problem(value)) is not None:
                out.append(f"{key}: {problem} (header injection)")
        for name, value in self.headers:
            if not _HEADER_NAME.match(name) or name.lower() in _RESERVED:
                out.append(f"headers.{name}: not allowed as an extra header (reserved or "
                           f"malformed name)")
            if (problem := header_problem(value)) is not None:
                out.append(f"headers.{name}: {problem}")
        for key, text, is_html in (("subject", self.subject, False), ("text", self.text, False),
                                   ("html", self.html, True)):
            if text is None:
                continue
            try:
                analyse(text, html=is_html)
            except TemplateError as exc:
                out.append(f"{key}: {exc}")
            if half := _HALF_FIELD.search(text):
                line = text.count("\n", 0, half.start()) + 1
                out.append(f"{key}: line {line}: {half.group(0)!r} lacks an opening brace; "
                           f"{_HOW}")
        if self.unsubscribe_url:
            if not self.unsubscribe_url.lower().startswith("https://"):
                out.append("unsubscribe_url: RFC 8058 one-click unsubscribe needs an https:// "
                           "URL")
            elif _TAGS.search(FIELD.sub("", self.unsubscribe_url)):
                out.append("unsubscribe_url: only plain {{ field }} merge fields are allowed "
                           "in a URL")
            else:
                try:
                    ascii_url(self.unsubscribe_url)
                except TemplateError as exc:
                    out.append(f"unsubscribe_url: {exc}")
        if self.unsubscribe_mailto:
            try:
                _mailto_value(self.unsubscribe_mailto)
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
        return template.checked(source)

    def checked(self, source: str = "template") -> Template:
        """This template with its sender normalised and its unsubscribe URL in ASCII, or
        TemplateError listing every problem."""
        problems = self.problems()
        if problems:
            raise TemplateError(f"{source}: " + "; ".join(problems))
        template = self
        if template.sender:
            template = attrs.evolve(template, sender=normalize_address(template.sender))
        if template.unsubscribe_url:
            template = attrs.evolve(template, unsubscribe_url=ascii_url(template.unsubscribe_url))
        return template


def load_template(path: str | Path) -> Template:
    """Read a TOML template file (keys: subject, text, html, sender, sender_name, headers,
    unsubscribe_url, unsubscribe_mailto)."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{file}: cannot read it as UTF-8 text ({exc}); save it as "
                            f"UTF-8") from None
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
        # a piece starting with a dot right after a line end is at a line start only when
        # the value between is empty: those values must be set for the letter to be ready
        self.raw_ready = self.ascii and _ready_piece(self.raw[0]) and all(
            _ready_piece(p[1:] if p.startswith(b".") else p) for p in self.raw[1:])
        self.dot_guards: list[str] = []
        for name, before, piece in zip(self.names, self.raw, self.raw[1:], strict=False):
            if piece.startswith(b"."):
                if not before.endswith(b"\n") and before:
                    continue
                if not before:  # an empty piece: the line start may lie further back
                    self.raw_ready = False
                self.dot_guards.append(name)
        self.qp_ready = all(_ready_piece(p) for p in self.qp)

    def render(self, fields: Mapping[str, str]) -> tuple[bool, bytes, bool]:
        """``(is_7bit, body bytes, wire-ready)``; each distinct field is escaped and encoded
        once. Wire-ready: CRLF line ends only and no line starting with a dot, known from the
        compiled pieces and the values alone (see :attr:`Envelope.wire_ready`)."""
        values = {name: str(fields.get(name, "")) for name in self.unique}
        if self.escape:
            values = {name: html.escape(v) for name, v in values.items()}
        ready = all(_ready_value(v) for v in values.values())
        if self.ascii and all(v.isascii() and len(v) < 200 for v in values.values()):
            raw = {n: _raw(v) if "\n" in v else v.encode("ascii") for n, v in values.items()}
            out = [self.raw[0]]
            for name, piece in zip(self.names, self.raw[1:], strict=True):
                out.append(raw[name])
                out.append(piece)
            body = b"".join(out)
            ready = ready and self.raw_ready and all(values[n] for n in self.dot_guards)
            return True, body if body.endswith(b"\r\n") else body + b"\r\n", ready
        encoded = {name: _qp(v) for name, v in values.items()}
        # every value starts a line of its own here; its wrapped lines are checked as well
        ready = self.qp_ready and all(_ready_piece(e) for e in encoded.values())
        parts = [self.qp[0]]
        for name, piece in zip(self.names, self.qp[1:], strict=True):
            parts.append(encoded[name])
            parts.append(piece)
        body = b"".join(parts)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        elif body.endswith(b"=\r\n"):
            body = body[:-3] + b"\r\n"
        return False, body, ready


def _ready_piece(piece: bytes) -> bool:
    """A compiled piece that needs neither line-end repair nor dot-stuffing, wherever it
    lands (it does not start with a dot either)."""
    bare = piece.replace(b"\r\n", b"")
    return b"\r" not in bare and b"\n" not in bare and b"\n." not in piece \
        and not piece.startswith(b".")


def _ready_value(value: str) -> bool:
    """A merge value that cannot break a line or start one with a dot."""
    return not value or (value[0] != "." and "\r" not in value and "\n" not in value)


def _ready_line(value: bytes) -> bool:
    """A header value that stays within its line."""
    return b"\r" not in value and b"\n" not in value


def _encode_text(text: str) -> tuple[bool, bytes]:
    """A whole rendered body: ``(is_7bit, bytes)`` ending with CRLF."""
    text = text.replace("\r\n", "\n")
    if text.isascii() and not _long_lines(text):
        body = _raw(text)
        return True, body if body.endswith(b"\r\n") else body + b"\r\n"
    body = _qp(text)
    if body.endswith(b"=\r\n"):
        return False, body[:-3] + b"\r\n"
    return False, body if body.endswith(b"\r\n") else body + b"\r\n"


def _present(fields: Mapping[str, str]) -> dict[str, str]:
    """The values a Jinja2 part sees: an empty value counts as missing (so ``default``
    fills an empty cell and ``if`` reads it as false)."""
    return {name: str(value) for name, value in fields.items() if value not in ("", None)}


class _JinjaBody:
    """A text part with defaults or conditions, rendered by the sandboxed Jinja2 template
    (HTML-escaped by autoescape in the HTML part)."""

    def __init__(self, part: Part) -> None:
        assert part.jinja is not None
        self.jinja = part.jinja
        self.unique = part.names

    def render(self, fields: Mapping[str, str]) -> tuple[bool, bytes, bool]:
        return (*_encode_text(self.jinja.render(_present(fields))), False)


def _body(text: str, *, escape: bool) -> _Body | _JinjaBody:
    part = analyse(text, html=escape)
    return _Body(text, escape=escape) if part.plain else _JinjaBody(part)


_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")

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
        subject = analyse(template.subject)
        self._subject_jinja = subject.jinja
        self._subject_literals, self._subject_names = _split(template.subject)
        self._subject = (None if self._subject_names or subject.jinja is not None
                         else b"Subject: " + header_text(template.subject) + b"\r\n")
        self._url_literals, self._url_names = _split(ascii_url(template.unsubscribe_url)
                                                     if template.unsubscribe_url else "")
        tail = []
        if template.unsubscribe_url is None and template.unsubscribe_mailto:
            tail.append(b"List-Unsubscribe: <" + self._mailto() + b">\r\n")
        for name, value in template.headers:
            tail.append(name.encode("ascii") + b": " + header_text(value) + b"\r\n")
        tail.append(b"MIME-Version: 1.0\r\n")
        self._text = _body(template.text, escape=False)
        self._html = _body(template.html, escape=True) if template.html is not None else None
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
        self._fixed_ready = all(_ready_piece(p) for p in (
            self._head, self._tail, self._between, self._end, *_CTE.values()))

    def _mailto(self) -> bytes:
        return _mailto_value(self.template.unsubscribe_mailto or "").encode("ascii")

    def subject(self, fields: Mapping[str, str]) -> bytes:
        if self._subject is not None:
            return self._subject
        if self._subject_jinja is not None:  # values were checked at creation; be safe anyway
            text = _CONTROL.sub(" ", self._subject_jinja.render(_present(fields)))
            return b"Subject: " + header_text(text) + b"\r\n"
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
        return self.render_wire(to=to, fields=fields, letter_id=letter_id,
                                message_id=message_id, date=date)[0]

    def render_wire(self, *, to: str, fields: Mapping[str, str], letter_id: str,
                    message_id: str, date: bytes) -> tuple[bytes, bool]:
        """The letter's bytes, and whether they are wire-ready (CRLF line ends only, no line
        starting with a dot: the SMTP client sends them without scanning them again)."""
        seven, text, ready = self._text.render(fields)
        subject, unsubscribe = self.subject(fields), self.unsubscribe(fields)
        head = [to.encode("ascii"), date, message_id.encode("ascii"), letter_id.encode("ascii")]
        ready = (ready and self._fixed_ready and _ready_piece(subject)
                 and _ready_piece(unsubscribe) and all(_ready_line(v) for v in head))
        parts = [self._head, b"To: ", head[0], b"\r\n", subject, b"Date: ", head[1],
                 b"\r\nMessage-ID: ", head[2], b"\r\n" + LETTER_ID_HEADER.encode() + b": ",
                 head[3], b"\r\n", unsubscribe, self._tail, _CTE[seven], text]
        if self._html is not None:
            seven, body, html_ready = self._html.render(fields)
            ready = ready and html_ready
            parts += [self._between, _CTE[seven], body, self._end]
        return b"".join(parts), ready


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
