"""Addresses, RFC 3463 status codes and SMTP reply codes found in free text."""

from __future__ import annotations

import re
from collections.abc import Iterator

# Linear on any input: a match attempt starts only where a local part can start (the
# look-behind refuses every character a local part may hold, so a run of ``!#$&'*`` is
# tried once, not once per character), and the quoted form and labels are bounded.
ADDR_RE = re.compile(
    r"(?<![\w.+\-=/%!#$&'*?^`{|}~])"
    r"(?:\"[^\"\r\n]{1,64}\"|[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-][A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]*)"
    r"@(?:\[[0-9.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?)*)"
)
# The look-behinds come after the first digit (they test the character before it): a pattern
# that starts with a character set is searched for that set first, several times faster.
STATUS_RE = re.compile(r"([245])(?<![\d.][245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
"""``X.Y.Z`` not preceded by a digit or a dot."""
REPLY_RE = re.compile(r"([245](?<![^\s:(\[\"'=#][245])[0-5]\d)(?=[ \-:;,.)\]]|$)(?![.\d]\d)",
                      re.MULTILINE)
"""``550`` at the start of the text or after a space or one of ``:(["'=#``."""
_TYPE_PREFIX = re.compile(r"^(?:smtp|rfc822|mailto)[=:]", re.IGNORECASE)
SYSTEM_LOCALS = frozenset({
    "postmaster", "mailer-daemon", "mailerdaemon", "mail-daemon", "maildaemon", "abuse",
    "noreply", "no-reply", "donotreply", "do-not-reply", "double-bounce", "nobody",
    "mail.delivery.system", "hostmaster", "webmaster",
})


def address_matches(text: str, pos: int = 0) -> Iterator[re.Match[str]]:
    """``ADDR_RE.finditer(text, pos)``, searched only from the line of the next ``@``.

    No part of an address (local part, quoted or not, and domain) holds a line end, so no
    match starts before the last line end ahead of the next ``@``: the text before it is
    skipped, which is most of a report. Linear: each step starts past the previous match."""
    while True:
        at = text.find("@", pos)
        if at < 0:
            return
        line = max(text.rfind("\n", pos, at), text.rfind("\r", pos, at)) + 1
        match = ADDR_RE.search(text, max(pos, line))
        if match is None:
            return
        yield match
        pos = match.end()


_STRIPPED = "<>[]()'\",;:"


def clean_address(text: str) -> str | None:
    """Normalise one address: strip brackets, quotes around the local part, trailing dots."""
    text = text.strip().strip(_STRIPPED).strip()
    if text[:7].lower().startswith(("mailto:", "smtp:", "rfc822;")):
        text = text.split(":", 1)[1] if ":" in text else text.split(";", 1)[1]
        text = text.strip().strip("<>").strip()
    match = ADDR_RE.search(text)
    return _cleaned(match.group(0)) if match else None


def _cleaned(addr: str) -> str | None:
    """The address ``ADDR_RE`` matched, normalised (the end of :func:`clean_address`)."""
    addr = addr.rstrip(".-")
    local, _, domain = addr.rpartition("@")
    # an address-type prefix glued to the local part (Domino "smtp=", Exchange "SMTP:")
    if "=" in local or ":" in local:
        local = _TYPE_PREFIX.sub("", local, count=1)
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        local = local[1:-1]
    if not local or not domain or len(addr) > 254:
        return None
    return f"{local}@{domain}"


def addresses_in(text: str) -> list[str]:
    """All addresses in ``text``, cleaned, in order, without duplicates (case-insensitive)."""
    if "@" not in text:
        return []
    seen: set[str] = set()
    out: list[str] = []
    for match in address_matches(text):
        found = match.group(0)
        # a match that neither starts nor ends with a character clean_address strips is
        # already what it would find in it
        addr = _cleaned(found) if found[0] not in _STRIPPED and found[-1] not in _STRIPPED \
            else clean_address(found)
        if addr and addr.lower() not in seen:
            seen.add(addr.lower())
            out.append(addr)
    return out


def is_system_address(addr: str) -> bool:
    """True for role addresses of mail systems (postmaster, MAILER-DAEMON, ...)."""
    return addr.rpartition("@")[0].lower() in SYSTEM_LOCALS


def find_status(text: str) -> str | None:
    """The first RFC 3463 enhanced status code in ``text``."""
    match = STATUS_RE.search(text)
    if not match:
        return None
    code = ".".join(match.groups())
    return code


def find_reply_code(text: str) -> str | None:
    """The first SMTP reply code (``550``) in ``text``."""
    match = REPLY_RE.search(text)
    return match.group(1) if match else None
