"""Entry points: turn any message into a :class:`BounceReport` (never raises)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from email import policy
from email.message import Message
from email.parser import BytesParser, HeaderParser

import attrs

from mailfleet.bounces.codes import (
    addresses_in,
    clean_address,
    find_reply_code,
    find_status,
    is_system_address,
)
from mailfleet.bounces.dsn import DSN_HINT, DsnRecipient, parse_dsn
from mailfleet.bounces.mime import (
    MAX_TEXT,
    content_disposition,
    content_param,
    decode_header_value,
    header,
    headers_text,
    limit_input,
    parse_flat,
    parse_raw,
    part_text,
    raw_headers,
    walk,
)
from mailfleet.bounces.prefilter import Phrases
from mailfleet.bounces.reasons import classify, is_hard, smtp_command
from mailfleet.bounces.report import BounceReport, FailedRecipient, Kind
from mailfleet.bounces.rhost import by_host, remote_host
from mailfleet.bounces.ses import parse_ses
from mailfleet.bounces.signals import (
    is_autoreply,
    looks_like_bounce_sender,
    looks_like_bounce_subject,
    looks_like_bounce_text,
)
from mailfleet.bounces.text import (
    MAX_RECIPIENTS,
    find_recipients,
    is_warning,
    lines_mentioning,
    report_region,
    strip_addresses,
)
from mailfleet.sending.identity import LETTER_ID_RE, VERP_RE

_LETTER_ID = Phrases(LETTER_ID_RE.pattern, re.IGNORECASE)
_LETTER_HEADER = b"x-mailfleet-letter-id"
_VERP_HEADERS = ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To",
                 "X-Rcpt-To", "Original-Recipient", "Return-Path", "X-Failed-Recipients-To")
_MSGID_RE = re.compile(r"^[ \t>]*Message-I[Dd][ \t]*:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s]+>)",
                       re.MULTILINE | re.IGNORECASE)
_MTA_RE = Phrases(
    r"(?:at host|program at|agent at|mail system at(?: host)?|system at|server at|"
    r"message from|delivery agent at|reporting-mta:[ \t]*dns;)\s++\[?"
    r"([a-z0-9\-]{1,63}(?:\.[a-z0-9\-]{1,63}){0,20}\.[a-z]{2,63})",
    re.IGNORECASE,
)
_TAG_RE = re.compile(r"<[^<>]{1,4000}>")
_HIDDEN_RE = re.compile(r"<(style|script)\b", re.I)
_GAVE_UP = re.compile(r"envelope expired", re.I)
_EXIM_RETRY = re.compile(r"retry timeout exceeded", re.I)
_EXIM_LAYOUT = re.compile(r"following address\(es\) failed", re.I)
_ZOHO = re.compile(r"(^|\.)zoho(mail)?\.com$", re.IGNORECASE)
_HOST_UNREACHABLE = re.compile(r"host not reachable", re.IGNORECASE)
_GROUP_DOMAIN = re.compile(r"@googlegroups\.com$", re.IGNORECASE)
_ORIGINAL_TYPES = frozenset({"message/rfc822", "message/global", "text/rfc822-headers",
                             "message/rfc822-headers", "text/rfc822-header"})


@attrs.define
class _Parts:
    texts: list[str] = attrs.field(factory=list)
    html: list[str] = attrs.field(factory=list)
    dsn: list[str] = attrs.field(factory=list)
    feedback: list[str] = attrs.field(factory=list)
    originals: list[Message] = attrs.field(factory=list)
    original_headers: list[str] = attrs.field(factory=list)
    report_type: str = ""


def _collect(msg: Message) -> _Parts:
    parts = _Parts()
    try:
        parts.report_type = (content_param(msg, "report-type") or "").lower()
    except Exception:
        parts.report_type = ""
    for part, ctype, inside in walk(msg):
        if inside:
            continue
        if ctype.endswith("delivery-status"):
            parts.dsn.append(part_text(part))
        elif ctype == "message/feedback-report":
            parts.feedback.append(part_text(part))
        elif ctype in {"message/rfc822", "message/global"}:
            try:
                payload = part.get_payload()
            except Exception:
                payload = None
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                parts.originals.append(payload[0])
            elif isinstance(payload, str):
                parts.original_headers.append(payload[:100_000])
        elif ctype in _ORIGINAL_TYPES:
            parts.original_headers.append(part_text(part))
        elif ctype == "text/plain" or (ctype.startswith("text/") and ctype != "text/html"
                                       and not part.is_multipart()):
            try:
                disposition = content_disposition(part)
            except Exception:
                disposition = None
            text = part_text(part)
            if disposition == "attachment" and not DSN_HINT.hit(text):
                parts.original_headers.append(text)
            else:
                parts.texts.append(text)
        elif ctype == "text/html":
            parts.html.append(_html_text(part_text(part)))
    if not parts.texts and parts.html:
        parts.texts = [re.sub(r"[ \t]+", " ", h) for h in parts.html]
    if not parts.texts and not parts.dsn and not parts.originals:
        parts.texts.append(_raw_body(msg))
    return parts


def _html_text(html: str) -> str:
    """The visible text of an HTML part: style and script elements and tags removed
    (found with ``str.find``, so an unclosed element costs linear time, not quadratic)."""
    low = html.lower()
    if len(low) != len(html):
        low = html
    pieces: list[str] = []
    pos = 0
    for match in _HIDDEN_RE.finditer(html):
        if match.start() < pos:
            continue
        pieces.append(html[pos:match.start()])
        close = low.find("</" + match.group(1).lower(), match.end())
        if close < 0:
            pos = len(html)
            break
        pos = close
    pieces.append(html[pos:])
    return _TAG_RE.sub(" ", "".join(pieces)).replace("&nbsp;", " ")


def _raw_body(msg: Message) -> str:
    """The undecoded body of a message whose MIME structure could not be used."""
    try:
        payload = msg.get_payload()
    except Exception:
        return ""
    if isinstance(payload, str):
        return payload[:300_000]
    try:
        text = msg.as_string()
    except Exception:
        return ""
    body = text.partition("\n\n")[2]
    return body[:300_000]


def _letter_id(msg: Message, raw: bytes, parts: _Parts) -> str | None:
    # a returned message's header fields are raw text: without the field's name in the raw
    # bytes they cannot hold it (a decoded part can)
    in_raw = _LETTER_HEADER in raw.lower()
    returned = [headers_text(o) for o in parts.originals] if in_raw else []
    for text in [*returned, *parts.original_headers, *parts.texts]:
        match = _LETTER_ID.search(text)
        if match:
            return match.group(1)
    if in_raw:
        match = LETTER_ID_RE.search(raw.decode("latin-1"))
        if match:
            return match.group(1)
    for name in _VERP_HEADERS:
        values = raw_headers(msg, name)
        # a VERP address has a "+" (decoding adds one only from an encoded word)
        if values and ("+" in values[0] or "=?" in values[0]):
            verp = VERP_RE.search(decode_header_value(values[0]))
            if verp:
                return verp.group(1)
    for text in parts.dsn:
        verp = VERP_RE.search(text)
        if verp:
            return verp.group(1)
    return None


def _original_message_id(msg: Message, parts: _Parts, tail: str) -> str | None:
    own = header(msg, "Message-ID")
    for original in parts.originals:
        value = header(original, "Message-ID")
        if value and value != own:
            return value
    for text in [*parts.original_headers, tail]:
        match = _MSGID_RE.search(text)
        if match and match.group(1) != own:
            return match.group(1)
    return None


def _reporting_mta(msg: Message, text: str) -> str | None:
    """The reporting MTA named in the report text, else the domain of its From."""
    match = _MTA_RE.search(text[:5000])
    if match:
        return match.group(1).rstrip(".").lower()
    sender = clean_address(header(msg, "From"))
    return sender.rpartition("@")[2].lower() if sender else None


def _recipient(address: str, status: str | None, reply: str | None, diagnostic: str | None,
               *, action: str | None, kind: Kind, context: str = "",
               remote: bool = False, exim_retry: bool = False,
               remote_mta: str | None = None, reporter: str | None = None) -> FailedRecipient:
    diag_text = " ".join((diagnostic or "").split())[:1000] or None
    if kind == "delivered":
        return FailedRecipient(address, action or "delivered", status or "2.0.0", reply,
                               "delivered", False, diag_text)
    provider_rule = False
    plain = strip_addresses(diag_text or "")
    command = smtp_command(diag_text) or smtp_command(context)
    reason = classify(status, plain, temporary=kind == "delay",
                      # the context only tells the command, when the texts named none
                      context=None if command else strip_addresses(context), remote=remote,
                      command=command)
    if diag_text:
        # the receiving provider's own codes and texts (sisimai's per-host rules)
        hosts = (remote_mta or remote_host(diag_text) or remote_host(context),
                 address.rpartition("@")[2], reporter)
        ruled = by_host(hosts, diag_text, status, command)
        if ruled:
            reason = ruled
            provider_rule = True
        elif reason == "networkerror" and _ZOHO.search(reporter or "") and \
                _HOST_UNREACHABLE.search(diag_text):
            reason = "expired"  # Zoho's own "Host not reachable" retry notices
    if _GROUP_DOMAIN.search(address):
        # Google Groups answers a refused post (no such group, or not allowed to post)
        reason = "rejected"
    if status is None:
        if reply and reply[0] in "45":
            status = f"{reply[0]}.0.0"
        elif _GAVE_UP.search(diag_text or ""):
            # the queue dropped the message: final even inside a "delayed" report
            status = "5.4.7"
        elif kind == "delay" or (exim_retry and _EXIM_RETRY.search(diag_text or "")):
            # Exim's "retry timeout exceeded" ends a run of temporary failures (class 4,
            # as sisimai files it); so does a warning
            status = "4.2.2" if reason == "mailboxfull" else "4.4.7"
        else:
            status = "5.0.0"
    # a temporary (4xx) failure never proves the address dead
    hard = is_hard(reason, status, plain, provider=provider_rule)
    return FailedRecipient(address, action, status, reply, reason, hard, diag_text)


_VAGUE_REASONS = frozenset({"networkerror", "systemerror", "onhold", "undefined"})
_RCPT_HEADERS = ("To", "Cc", "Bcc", "Delivered-To", "X-Original-To", "Envelope-To",
                 "X-Envelope-To", "X-Rcpt-To")
_TEXT_RCPT_RE = Phrases(r"^>?[ \t]*(?:to|cc|delivered-to|x-original-to|envelope-to)[ \t]*:"
                        r"[ \t]*(.+(?:\r?\n[ \t]+.+)*)", re.IGNORECASE | re.MULTILINE)
# "f(?<!\wf)or" is "\bfor" starting with its letter (searched for the letter first)
_FOR_RE = Phrases(r"f(?<!\wf)or[ \t]++<([^<>\s@]{1,256}@[^<>\s]{1,256})>", re.IGNORECASE)


def _original_recipients(parts: _Parts, tail: str) -> list[str]:
    """Addresses the returned original message was sent to (its To/Cc, Delivered-To ...
    and the ``for <addr>`` of its Received fields), in order, system addresses left out."""
    found: list[str] = []
    for original in parts.originals:
        for name in _RCPT_HEADERS:
            found += addresses_in(header(original, name))
        for received in _received_fields(original):
            found += _FOR_RE.groups(received)
    for text in [*parts.original_headers, tail[:50_000]]:
        low = text.lower()
        for value in _TEXT_RCPT_RE.groups(text, low=low):
            found += addresses_in(value)
        found += _FOR_RE.groups(text, low=low)
    seen: set[str] = set()
    out: list[str] = []
    for addr in found:
        clean = clean_address(addr)
        if clean and clean.lower() not in seen and not is_system_address(clean):
            seen.add(clean.lower())
            out.append(clean)
    return out


_FEEDBACK_FIELDS = re.compile(r"^(?:Original-Rcpt-To|Removal-Recipient)[ \t]*:[ \t]*(.+)$",
                             re.IGNORECASE | re.MULTILINE)
# Where the complained-about recipient sits in the enclosed message when the report has no
# Original-Rcpt-To (RFC 5965 makes it optional): Microsoft's JMRP header, To, and when the
# provider redacted To ("undisclosed"), the headers a delivering MTA adds.
_FEEDBACK_HEADERS = ("X-HmXmrOriginalRecipient", "To", "X-Original-To", "Delivered-To",
                     "Envelope-To", "X-Envelope-To", "X-Rcpt-To")


def _feedback_recipients(msg: Message, parts: _Parts, fb_text: str) -> list[str]:
    """The complainants of an ARF report: its Original-Rcpt-To / Removal-Recipient
    fields, else the enclosed message's recipient headers, else the ``for <addr>`` of its
    topmost Received field; never the report's own addresses or a role address."""
    found = [a for a in (clean_address(v) for v in _FEEDBACK_FIELDS.findall(fb_text)) if a]
    if found:
        return found
    own = {a.lower() for name in ("To", "From") for a in addresses_in(header(msg, name))}
    enclosed = list(parts.originals)
    for text in parts.original_headers:
        try:
            enclosed.append(HeaderParser(policy=policy.compat32).parsestr(text[:MAX_TEXT]))
        except Exception:  # noqa: S112 - unreadable headers name nobody
            continue
    for original in enclosed:
        for name in _FEEDBACK_HEADERS:
            found = [a for a in addresses_in(header(original, name))
                     if not is_system_address(a) and a.lower() not in own]
            if found:
                return found
        received = _received_fields(original)
        if received:
            found = [a for a in _FOR_RE.groups(received[0]) if a.lower() not in own]
            if found:
                return found
    return []


def _received_fields(msg: Message) -> list[str]:
    try:
        return [" ".join(v.split()) for v in raw_headers(msg, "Received")[:20]]
    except Exception:
        return []


def _last_hop_recipients(parts: _Parts) -> list[str]:
    """Who the returned message was last addressed to: the ``for <addr>`` of its topmost
    Received field (the envelope recipient at the hop that gave up), else its To/Cc."""
    found: list[str] = []
    for original in parts.originals:
        received = _received_fields(original)
        if received:
            found += _FOR_RE.groups(received[0])
        if not found:
            for name in ("To", "Cc"):
                found += addresses_in(header(original, name))
    for text in parts.original_headers:
        head = text.split("\n\n", 1)[0]
        top = re.search(r"^Received:.*(?:\r?\n[ \t]+.*)*", head, re.MULTILINE)
        if top:
            found += _FOR_RE.groups(top.group(0))
        if not found:
            for match in re.finditer(r"^(?:To|Cc)[ \t]*:[ \t]*(.+(?:\r?\n[ \t]+.+)*)", head,
                                     re.IGNORECASE | re.MULTILINE):
                found += addresses_in(match.group(1))
    seen: set[str] = set()
    out: list[str] = []
    for addr in found:
        if addr.lower() not in seen:
            seen.add(addr.lower())
            out.append(addr)
    return out


def _excluded(msg: Message, parts: _Parts, original_rcpts: list[str]) -> set[str]:
    """Addresses that are never failed recipients: the report's own To/From/Reply-To/
    Sender, and the returned message's sender, unless it also addressed itself."""
    out: set[str] = set()
    for name in ("To", "From", "Reply-To", "Sender"):
        out.update(a.lower() for a in addresses_in(header(msg, name)))
    addressed = {a.lower() for a in original_rcpts}
    for original in parts.originals:
        for name in ("From", "Sender", "Return-Path", "Reply-To"):
            out.update(a.lower() for a in addresses_in(header(original, name))
                       if a.lower() not in addressed or a.lower() in out)
    return out


def _text_diagnostic(address: str, region: str, segment: str | None,
                     shared: bool = True) -> str:
    """The text explaining ``address``'s failure: its own segment when it quotes a code,
    else the lines naming it with a code, else (``shared``: a single-recipient report)
    the end of the report text. With several recipients another one's text is never
    borrowed."""
    if segment and (find_status(segment) or find_reply_code(segment)):
        return segment
    mention = lines_mentioning(region, address)
    if mention:
        return mention
    if not shared and segment and len(strip_addresses(segment).strip(" \t\r\n<>:()[],.")) > 3:
        return segment
    return (segment or "") + "\n" + region[-2000:]


def _from_dsn(dsn_recipients: list[DsnRecipient], warning: bool, region: str,
              exclude_text: dict[str, str],
              reporter: str | None = None) -> tuple[Kind, list[FailedRecipient]]:
    actions = [r.action or "" for r in dsn_recipients]
    kind: Kind
    if any(a.startswith("fail") for a in actions):
        kind = "bounce"
    elif any(a.startswith("delay") for a in actions):
        kind = "delay"
    elif actions and all(a.startswith(("deliver", "relay", "expand")) for a in actions):
        kind = "delivered"
    else:
        classes = {(r.status or "")[:1] for r in dsn_recipients}
        if classes == {"2"}:
            kind = "delivered"
        elif "5" not in classes and warning:
            kind = "delay"
        else:
            kind = "bounce"
    out: list[FailedRecipient] = []
    seen: set[str] = set()
    for r in dsn_recipients:
        act = r.action or ""
        if kind == "bounce" and act and not act.startswith("fail"):
            continue
        if kind == "delay" and act and not act.startswith("delay"):
            continue
        if r.address.lower() in seen:
            continue
        if len(out) >= MAX_RECIPIENTS:
            break
        seen.add(r.address.lower())
        diag = r.diagnostic
        context = _text_diagnostic(r.address, region, exclude_text.get(r.address.lower()))
        if not diag or not (find_status(diag) or len(diag) > 12):
            diag = ((diag or "") + "\n" + context).strip()
        status = r.status
        diag_status = find_status(r.diagnostic or "")
        if not diag_status and status and status[1:] == ".0.0":
            # a bare X.0.0 Status: the report text may quote the remote server's code
            diag_status = find_status(exclude_text.get(r.address.lower()) or "")
        # the remote server's own code in Diagnostic-Code is more specific than the
        # reporting MTA's Status (5.0.0, or 5.1.1 over "552 5.2.2 Over quota")
        if status and diag_status and (diag_status[0] == status[0] or (
                act.startswith("fail") and status[0] == "4" and diag_status[0] == "5")):
            status = diag_status
        if status and status[0] == "4" and _GAVE_UP.search(
                exclude_text.get(r.address.lower()) or ""):
            status = "5.4.7"  # the report text says the queue dropped it: final
        rcpt = _recipient(r.address, status, r.reply_code, diag, action=r.action,
                          kind=kind, context=context, remote=bool(r.diagnostic),
                          remote_mta=r.remote_mta, reporter=reporter)
        if (r.raw_action or "").startswith("expire") and rcpt.reason in _VAGUE_REASONS:
            # a non-standard "Action: expired": the queue lifetime ran out
            rcpt = attrs.evolve(rcpt, reason="expired")
        out.append(rcpt)
    return kind, out


def _parse(msg: Message, raw: bytes) -> BounceReport:
    parts = _collect(msg)
    full_text = "\n".join(parts.texts)
    region = report_region(full_text)
    tail = full_text[len(region):]
    letter_id = _letter_id(msg, raw, parts)
    text_mta = _reporting_mta(msg, full_text)
    original_id = _original_message_id(msg, parts, tail)
    subject = header(msg, "Subject")

    def report(kind: Kind, recipients: list[FailedRecipient], mta: str | None = None,
               msg_id: str | None = None) -> BounceReport:
        return BounceReport(kind=kind, recipients=tuple(recipients),
                            original_message_id=msg_id or original_id, letter_id=letter_id,
                            reporting_mta=mta or text_mta)

    # RFC 5965 feedback reports
    if parts.feedback or parts.report_type == "feedback-report":
        fb_text = "\n".join(parts.feedback)
        fb_addrs = _feedback_recipients(msg, parts, fb_text)
        seen: set[str] = set()
        fb = []
        for a in fb_addrs:
            if a.lower() not in seen:
                seen.add(a.lower())
                fb.append(FailedRecipient(a, None, None, None, "feedback", False, None))
        mta = re.search(r"^Reporting-MTA:[ \t]*(?:\w+;[ \t]*)?(\S+)", fb_text,
                        re.I | re.M)
        return report("feedback", fb, mta.group(1) if mta else None)

    # Amazon SES notifications
    for text in parts.texts:
        ses = parse_ses(text)
        if ses is not None:
            kind: Kind = ses.kind  # type: ignore[assignment]
            rcpts = [_recipient(r.address, r.status, r.reply_code, r.diagnostic,
                                action=None, kind=kind) for r in ses.recipients]
            return report(kind, rcpts, ses.reporting_mta, ses.message_id)

    warning = is_warning(subject + "\n" + region)
    dsn_sources = list(parts.dsn)
    if not any(DSN_HINT.hit(t) for t in dsn_sources):
        dsn_sources += [t for t in parts.texts if DSN_HINT.hit(t)]
    dsn_mta: str | None = None
    dsn_recipients: list[DsnRecipient] = []
    for text in dsn_sources:
        parsed = parse_dsn(text)
        dsn_mta = dsn_mta or parsed.reporting_mta
        dsn_recipients += parsed.recipients
    original_rcpts = _original_recipients(parts, tail)
    exclude = _excluded(msg, parts, original_rcpts)
    found = find_recipients(region, exclude, prefer={a.lower() for a in original_rcpts}) \
        if region.strip() else []
    text_rcpts = {r.address.lower(): r.diagnostic for r in found}
    if dsn_recipients:
        kind, rcpts = _from_dsn(dsn_recipients, warning, region, text_rcpts,
                                dsn_mta or text_mta)
        return report(kind, rcpts, dsn_mta)

    failed_header = header(msg, "X-Failed-Recipients")
    sender_sig = looks_like_bounce_sender(msg)
    subject_sig = looks_like_bounce_subject(msg)
    body_sig = looks_like_bounce_text(region)
    bounce_like = bool(failed_header) or bool(parts.dsn) or (
        (sender_sig or subject_sig) and (body_sig or bool(found))) or (
        body_sig and (sender_sig or subject_sig or bool(found)))
    if not bounce_like and not sender_sig and is_autoreply(msg):
        sender = clean_address(header(msg, "From"))
        rcpts = [FailedRecipient(sender, None, None, None, "vacation", False, None)] \
            if sender else []
        return report("autoreply", rcpts)
    if not bounce_like:
        return report("not-bounce", [])

    kind = "delay" if warning else "bounce"
    addresses: list[str] = []
    fallback = False
    if failed_header:
        addresses = addresses_in(failed_header)
    if not addresses:
        addresses = [r.address for r in found]
    if not addresses and (parts.dsn or (sender_sig and (subject_sig or body_sig))):
        # a clear failure report that names no address (Postfix "Delivery report
        # unavailable", bare notices): the returned message's single recipient failed
        candidates = [a for a in _last_hop_recipients(parts)
                      if a.lower() not in exclude and not is_system_address(a)]
        if len(candidates) == 1:
            addresses = candidates
            fallback = True
    addresses = addresses[:MAX_RECIPIENTS]
    rcpts = []
    exim_layout = not parts.dsn and bool(_EXIM_LAYOUT.search(region))
    for addr in addresses:
        diag = _text_diagnostic(addr, region, text_rcpts.get(addr.lower()),
                                shared=len(addresses) == 1)
        if fallback and not (find_status(region) or find_reply_code(region)):
            diag = ""  # the report says nothing about why: "undefined", not a guess
        rcpts.append(_recipient(addr, find_status(diag), find_reply_code(diag), diag,
                                action="delayed" if kind == "delay" else "failed", kind=kind,
                                exim_retry=exim_layout,
                                reporter=text_mta))
    return report(kind, rcpts)


log = logging.getLogger(__name__)

PluginParser = Callable[..., BounceReport | None]
"""The plugins' ``mailfleet_parse_bounce`` hook: ``(message=, raw=)`` -> report or None."""


def parse_message(message: Message, raw: bytes) -> BounceReport:
    """The core parser on a message already parsed (any policy) and its bytes (within the
    budget); never raises. The ``mailfleet_parse_bounce`` hook of the core calls it."""
    try:
        return _parse(message, raw)
    except Exception:  # any malformed input: an empty verdict, never an exception
        log.warning("bounce report of %d bytes could not be parsed", len(raw), exc_info=True)
        return _empty(raw)


def _empty(raw: bytes) -> BounceReport:
    try:
        letter = LETTER_ID_RE.search(raw.decode("latin-1"))
        return BounceReport(kind="not-bounce", letter_id=letter.group(1) if letter else None)
    except Exception:
        return BounceReport(kind="not-bounce")


def _core(raw: bytes) -> BounceReport:
    try:
        message = parse_raw(raw)
    except RecursionError:
        # a MIME structure nested deeper than the email package can follow: the body is
        # read as one text part
        message = parse_flat(raw)
    return parse_message(message, raw)


def parse_bounce(raw: bytes, plugins: PluginParser | None = None, *,
                 size: int | None = None) -> BounceReport:
    """THE production parse path: the mailbox readers, ``mailfleet bounces parse``, the
    scorer, the tests and the bench all come here (``Plugins.parse_bounce`` too).

    Applies the input budget (:data:`mailfleet.bounces.mime.MAX_BYTES`): a longer message
    is parsed on its first bytes (the report; the returned original comes after it) and
    the report's ``note`` says so. ``size`` is the full size when the caller read only the
    first bytes (an IMAP partial fetch). ``plugins`` is the plugins' bounce hook, called
    with a ``policy.default`` message when a plugin implements it; ``None`` from it (or an
    error) leaves the report to the core parser. Never raises.
    """
    try:
        data, note = limit_input(raw, size)
        report: BounceReport | None = None
        if plugins is not None:
            try:
                message = BytesParser(policy=policy.default).parsebytes(data)
                report = plugins(message=message, raw=data)
            except Exception:
                log.exception("a bounce parser plugin failed; using the core parser")
                report = None
        if report is None:
            report = _core(data)
    except Exception:
        log.exception("bounce report of %d bytes could not be parsed", len(raw))
        return BounceReport(kind="not-bounce")
    return attrs.evolve(report, note=note) if note else report
