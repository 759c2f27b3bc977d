"""Failed recipients in the plain-text layouts of MTAs that send no RFC 3464 part.

Covers the families by their common shapes rather than by file: qmail/Yahoo/Postfix
``<addr>:`` paragraphs, Exim/Mail.ru ``The following address(es) failed:`` lists,
Sendmail ``----- The following addresses had permanent fatal errors -----`` lists with
session transcripts, Exchange/Domino/Gmail(old)/Yandex "could not be delivered to"
headings, and a guarded generic fallback.
"""

from __future__ import annotations

import bisect
import itertools
import re

import attrs

from mailfleet.bounces.codes import (
    address_matches,
    addresses_in,
    clean_address,
    is_system_address,
)
from mailfleet.bounces.prefilter import Phrases

_I = re.IGNORECASE | re.MULTILINE
MAX_RECIPIENTS = 200
"""No real report lists more failed recipients; more is junk (and would cost time)."""
_MAX_FOUND = 5 * MAX_RECIPIENTS
"""Address mentions examined per layout; a text naming more is junk."""

# Where the returned original (or its headers) begins: the report text ends there.
_ORIGINAL_MARKERS = Phrases(
    r"^[ \t]*+[-=*_]{2,}+[ \t]*+(?:[^\n]{0,40}?)(?:this is a copy|copy of|original message|"
    r"returned message|unsent message|undelivered message|message header|original mail|"
    r"headers? of|message text|below this line|forwarded message|rfc822|"
    r"копия|оригинал|исходное|原信件|拷贝|元のメール)"
    r"|^[ \t]*+(?:-++ )?(?:original message (?:follows|details|headers)|"
    r"message headers follow|included is a copy|here is a copy of|a copy of the original|"
    r"a summary of the undelivered|original message as received|the original message headers|"
    r"following is a copy of|the headers? of (?:the|your) (?:original )?message|"
    r"below is a copy|your original message|original message header|"
    r"-++ ?message header follows|-++ ?header of the source mail|"
    r"-++ ?returned mail follows|-++ ?message body suppressed)",
    _I,
)
# (lower case: the prefilter runs them on the lowered text, without IGNORECASE)
_HEADER_LINE = Phrases(
    r"^>?(?:received|return-path|dkim-signature|message-id|mime-version|x-[a-z0-9\-]+|"
    r"content-type|date|from|to|subject|reply-to|sender|authentication-results|"
    r"arc-[a-z\-]+|delivered-to|references|in-reply-to):[ \t]",
    re.IGNORECASE | re.MULTILINE,
)
_HEADERISH_LINES = Phrases(
    r"^[ \t]*+(?:>[ \t]*+)?(?:to|cc|bcc|from|sender|reply-to|return-path|received|subject|"
    r"sent|date|message-id|in-reply-to|references|delivered-to|envelope-from|x-[\w\-]+|"
    r"auto-submitted|list-[\w\-]+|de|para|enviado el|asunto|von|an|betreff|"
    r"reporting-mta|received-from-mta|arrival-date)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_HEADINGS = Phrases(
    r"following (?:e-?mail )?(?:address|recipient|user|destination)|"
    r"address(?:es)? (?:failed|to which)|could not be delivered to|not (?:be )?delivered to|"
    r"could not be (?:reached|delivered)|failed permanently|has been delayed|"
    r"delivery to the following|"
    r"did not reach|delivery has failed to|unable to deliver|undeliverable to|"
    r"failed to (?:be delivered|deliver)|delivery (?:failed|problems?)|permanent fatal errors|"
    r"had (?:transient|permanent|delivery)|message not delivered|not yet been delivered|"
    r"recipients? (?:failed|rejected)|was not delivered|delivery failure|"
    r"rejected (?:recipient|address)|undeliverable|cannot be delivered|"
    r"recipients? (?:cannot|could not) be reached|failed recipients?|"
    r"permanent(?:ly)? (?:failure|error)s? (?:for|to)|"
    # German, French, Spanish, Italian, Portuguese, Dutch
    r"(?:konnte|kann) nicht (?:zugestellt|ausgeliefert)|nicht zustellbar|unzustellbar|"
    r"folgende[nr]? (?:empfänger|adresse)|"
    r"n'a pas (?:pu être|été) (?:remis|distribué|livré)|impossible de (?:remettre|distribuer|"
    r"livrer)|(?:aux|les) destinataires? suivants?|"
    r"no se (?:ha )?pod(?:ido|ía) entregar|no (?:pudo|ha podido) ser entregado|"
    r"(?:los )?siguientes destinatarios|"
    r"non (?:è stato possibile|può essere) (?:recapitat|consegnat)|"
    r"não (?:pôde|foi possível) (?:ser )?entreg|kon niet worden (?:bezorgd|afgeleverd)|"
    r"не (?:может быть |был[оа]? |удалось )?достав|следующ(?:им|ие|его) адрес|"
    r"無法|送達できません|配信できません|届きませんでした|宛先不明|无法|未能送达|退信",
    re.IGNORECASE,
)
_LINE_ADDR = re.compile(
    r"^[ \t]*+<([^<>\s@]{1,256}@[^<>\s]{1,256})>[>.,;]*+[ \t]*+(?::|\.\.\.|\(|$)",
    re.MULTILINE)
# A labelled field naming the failed address: Domino "Failed Recipient:", "Recipient
# address:", "Original recipient:", "Invalid recipient:", and the same in other languages.
_FIELD_ADDR = Phrases(  # run on the lowered text: the address is read from the text
    r"^[ \t]*+(?:(?:failed|original|intended|final|rejected|invalid|unknown|bad|undeliverable|"
    r"unreachable)[ \t-]*+|-[ \t]*+)?(?:recipient|addressee|empfänger|destinataire|destinatario|"
    r"получатель|адресат|宛先|收件人|收信人)s?(?:\(s\))?(?:[ \t]+(?:address|adresse|"
    r"adresse e-?mail|dirección|e-?mail))?[ \t]*+[:：][ \t]*+"
    r"(?:rfc822;[ \t]*+)?[\"']?[^\n@<]{0,60}?<?([^<>\s\"'@]{1,256}@[^<>\s\"']{1,256}?)>?"
    r"[ \t.,;]*+(?:\(|$)",
    re.IGNORECASE | re.MULTILINE)
_EXIM_ADDR = re.compile(
    r"^[ \t]{0,8}+<?([^<>\s:@]{1,256}@[^<>\s:]{1,256}?)>?(?::|[ \t]*$|[ \t]+on[ \t]+\w)",
    re.MULTILINE)
_LONE_TO_LINE = re.compile(r"^[ \t]*+(?:To|An|Para)[ \t]*+:[ \t]*+<?[^\s@]++@\S++[ \t\r]*$",
                           re.MULTILINE)
_RECEIVED_LINES = Phrases(
    r"^[ \t]*+(?:(?:from|by)[ \t]++\S++[ \t]++\(|\(envelope-from|for <)", re.I | re.M)
_GENERATED = re.compile(
    r"\((?:generated|expanded) from:?[ \t]*+<?([^<>\s)@]{1,256}@[^<>\s)]{1,256})>?\)", re.I)
_URL = Phrases(r"(?:https?|ftp)://\S+|mailto:", re.IGNORECASE)
# a message/queue id in angle brackets ("Message-ID: <...>", "queue id <...>"): found from
# each bracketed value (a fast literal search), then the words just before it
_ANGLED = re.compile(r"<[^<>\n]{0,256}>")
_MSGID_BEFORE = re.compile(r"(?:message-?id|id|mid|queue)[ \t]*+(?:[:=][ \t]*+)?\Z",
                           re.IGNORECASE)
_SUPPRESS = re.compile(
    r"(?:contact|please (?:contact|write)|send (?:an? )?e?-?mail to|report (?:details )?to|"
    r"helpdesk|postmaster|abuse|administrator|support|questions|"
    r"envelope-from|sender|from\b|по адресу)[^\n@]{0,60}$",
    re.IGNORECASE,
)
_WARNING = Phrases(
    r"this is a warning|has not yet been delivered|not yet been delivered|will (?:continue|keep) "
    r"(?:to )?(?:try|trying|attempt)|delivery attempts will continue|will be retried|"
    r"message will be retried|still (?:trying|being retried)|you do not need to resend|"
    r"delivery has been delayed|delivery (?:is )?delayed|has been delayed|will retry|"
    r"warning: message|delayed mail|delivery status notification \(delay\)|"
    r"письмо пока не доставлено|повторные попытки",
    re.IGNORECASE,
)


@attrs.frozen
class TextRecipient:
    """An address found in report text and the text that explains its failure."""

    address: str
    diagnostic: str


_SUMMARY_FIELDS = frozenset({"to", "subject", "date", "from", "cc", "sender", "reply-to"})
"""Header lines a report quotes about the message (not a pasted original)."""


def report_region(text: str) -> str:
    """The part of a text body before the returned original message."""
    cut = len(text)
    match = _ORIGINAL_MARKERS.search(text)
    if match:
        cut = match.start()
    # a run of two header lines at column 0 also starts a pasted original
    head = text[:cut]
    previous = (-2, "")
    for match in _HEADER_LINE.finditer(head):
        start = match.start()
        name = head[start:head.find(":", start)].lower().lstrip(">")
        line_before = head.rfind("\n", 0, max(start - 1, 0)) + 1 if start else -1
        if previous[0] == line_before and start > 0 and not (
                {previous[1], name} <= _SUMMARY_FIELDS):
            return text[:previous[0]]
        previous = (start, name)
    return head


def is_warning(text: str) -> bool:
    """True when the report text says the message is only delayed."""
    return _WARNING.hit(text[:20000])


class _Spans:
    """Sorted, merged character ranges of a text; ``inside`` is a binary search."""

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                if end > merged[-1][1]:
                    merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        self._starts = [a for a, _ in merged]
        self._ends = [b for _, b in merged]

    def inside(self, pos: int) -> bool:
        index = bisect.bisect_right(self._starts, pos) - 1
        return index >= 0 and pos < self._ends[index]


def _excluded_spans(region: str) -> _Spans:
    spans = [(m.start(), m.end()) for m in _URL.finditer(region)]
    for angled in _ANGLED.finditer(region):
        before = region[max(0, angled.start() - 24):angled.start()]
        word = _MSGID_BEFORE.search(before)
        if word:
            spans.append((angled.start() - len(before) + word.start(), angled.end()))
    # whole lines that are header fields ("To:" alone with an address is not: a Domino
    # "To: <addr>" names the failed recipient) or Received continuations
    for lines in (_HEADERISH_LINES, _RECEIVED_LINES):
        for match in lines.finditer(region):
            start = match.start()
            if lines is _HEADERISH_LINES and _LONE_TO_LINE.match(region, start):
                continue
            end = region.find("\n", start)
            spans.append((start, len(region) if end < 0 else end))
    return _Spans(spans)


def _structured(region: str, spans: _Spans,
                heading: re.Match[str] | None) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for rx in (_LINE_ADDR, _FIELD_ADDR):
        for match in itertools.islice(rx.finditer(region), _MAX_FOUND):
            addr = clean_address(region[match.start(1):match.end(1)])
            if addr and not spans.inside(match.start()):
                found.append((addr, match.start()))
    if found or not heading:
        return found
    tail_start = heading.start()
    for match in itertools.islice(_EXIM_ADDR.finditer(region, tail_start), _MAX_FOUND):
        addr = clean_address(match.group(1))
        if addr and not spans.inside(match.start()):
            found.append((addr, match.start()))
    for match in itertools.islice(_GENERATED.finditer(region, tail_start), _MAX_FOUND):
        addr = clean_address(match.group(1))
        if addr:
            found.append((addr, match.start()))
    return found


def _generic(region: str, spans: _Spans,
             heading: re.Match[str] | None) -> list[tuple[str, int]]:
    found = _generic_from(region, spans, heading.start() if heading else 0)
    if not found and heading:
        # "User's mailbox is full: <addr>" above an "Unable to deliver mail." line
        found = _generic_from(region, spans, 0)
    return found


def _generic_from(region: str, spans: _Spans,
                  start: int) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    if region.find("@", start) < 0:  # every address has one
        return found
    for match in itertools.islice(address_matches(region, start), _MAX_FOUND):
        if spans.inside(match.start()):
            continue
        before = region[max(0, match.start() - 80):match.start()]
        before_line = before.rsplit("\n", 1)[-1]
        if _SUPPRESS.search(before_line):
            continue
        addr = clean_address(match.group(0))
        if addr:
            found.append((addr, match.start()))
    return found


_CODE_ON_LINE = re.compile(
    r"(?<![\d.+\-])(?:[45][0-5]\d(?=[ \-:]\D|$)|[245]\.\d{1,3}\.\d{1,3}(?![\d.]))")


def _listed(region: str, pos: int) -> bool:
    """The address at ``pos`` starts its line or shares it with an SMTP/status code
    (a list entry or a transcript line, not a name in prose)."""
    start = region.rfind("\n", max(0, pos - 300), pos) + 1 or max(0, pos - 300)
    end = region.find("\n", pos, pos + 300)
    line = region[start:end if end >= 0 else pos + 300]
    return not region[start:pos].strip(" \t<\"'*-") or bool(_CODE_ON_LINE.search(line))


def find_recipients(region: str, exclude: set[str],
                    prefer: set[str] | None = None) -> list[TextRecipient]:
    """Failed recipients described in ``region`` (the report text), with diagnostics.

    ``prefer`` holds the (lower-cased) addresses the returned message was sent to: when
    the report has no recognised layout and mentions several addresses, those among
    them are the failed ones (the others are contacts, suggestions, aliases).
    """
    spans = _excluded_spans(region)
    heading = _HEADINGS.search(region)
    found = _structured(region, spans, heading)
    structured = bool(found)
    if not found:
        found = _generic(region, spans, heading)
        keys = {a.lower() for a, _ in found} - exclude
        if prefer and len(keys) > 1 and keys & prefer:
            found = [(a, pos) for a, pos in found
                     if a.lower() in prefer or _listed(region, pos)]
    result: list[TextRecipient] = []
    seen: set[str] = set()
    ordered = sorted(found, key=lambda item: item[1])
    for index, (addr, pos) in enumerate(ordered):
        key = addr.lower()
        if key in seen or key in exclude:
            continue
        if not structured and is_system_address(addr):
            continue
        if len(result) >= MAX_RECIPIENTS:
            break
        seen.add(key)
        end = len(region)
        for later_addr, later_pos in itertools.islice(ordered, index + 1, None):
            if later_addr.lower() != key and later_pos > pos:
                end = later_pos
                break
        segment = region[pos:min(end, pos + 1500)]
        result.append(TextRecipient(addr, segment))
    return result


_CODE_IN_LINE = re.compile(r"\b[245]\d\d\b")


def lines_mentioning(region: str, address: str, limit: int = 3) -> str:
    """Lines of ``region`` that mention ``address`` and carry a reply code, plus context."""
    low_region = region.lower()
    low = address.lower()
    if len(low_region) != len(region):  # a few characters change length when lowered
        low_region, low = region, address
    out: list[str] = []
    lines: list[str] | None = None
    pos = low_region.find(low)
    while pos >= 0 and len(out) < 20:
        start = low_region.rfind("\n", 0, pos) + 1
        end = low_region.find("\n", pos)
        line = region[start:end if end >= 0 else len(region)]
        if _CODE_IN_LINE.search(line):
            if lines is None:
                lines = region.split("\n")
            index = region.count("\n", 0, start)
            out.append(" ".join(lines[index:index + limit]))
        if end < 0:
            break
        pos = low_region.find(low, end)
    return "\n".join(out)


def strip_addresses(text: str) -> str:
    """``text`` with each address replaced by a space (so they do not sway the reason)."""
    pieces: list[str] = []
    pos = 0
    for match in address_matches(text):
        pieces += (text[pos:match.start()], " ")
        pos = match.end()
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


__all__ = ["TextRecipient", "addresses_in", "find_recipients", "is_warning", "report_region",
           "strip_addresses"]
