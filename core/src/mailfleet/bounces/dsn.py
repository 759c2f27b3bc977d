"""RFC 3464 delivery-status fields (also when pasted into a text part)."""

from __future__ import annotations

import re

import attrs

from mailfleet.bounces.codes import clean_address, find_reply_code, find_status
from mailfleet.bounces.prefilter import Phrases

_FIELD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9\-]{1,40})\s*:\s*(.*)$")
DSN_HINT = Phrases(r"^[ \t]*(?:final|original)-recipient[ \t]*:", re.IGNORECASE | re.MULTILINE)
"""A delivery-status recipient field (also pasted into a text part)."""


@attrs.frozen
class DsnRecipient:
    """One per-recipient block of a delivery-status report."""

    address: str
    action: str | None
    status: str | None
    reply_code: str | None
    diagnostic: str | None
    remote_mta: str | None
    raw_action: str | None = None


@attrs.frozen
class DsnReport:
    """The per-message fields and the per-recipient blocks."""

    reporting_mta: str | None
    recipients: tuple[DsnRecipient, ...]


_MAX_FIELD = 4000
"""A folded field is kept up to this many characters (no real DSN field is longer)."""


def _blocks(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    last: str | None = None

    def close() -> None:
        if current:
            blocks.append({name: " ".join(chunks)[:_MAX_FIELD]
                           for name, chunks in current.items()})
            current.clear()
            sizes.clear()

    for line in text.splitlines():
        if not line.strip():
            close()
            last = None
            continue
        if line[0] in " \t" and last is not None:
            if sizes[last] < _MAX_FIELD:  # a folded field grows linearly, and bounded
                current[last].append(line.strip())
                sizes[last] += len(current[last][-1]) + 1
            continue
        match = _FIELD_RE.match(line.strip())
        if not match:
            continue
        name = match.group(1).lower()
        if name in current and name in {"final-recipient", "original-recipient"}:
            close()
        last = name
        if name not in current:
            current[name] = [match.group(2).strip()]
            sizes[name] = len(current[name][0])
    close()
    return blocks


def _typed_value(value: str) -> str:
    """``rfc822; x@y`` -> ``x@y``; ``smtp; 550 ...`` -> ``550 ...``."""
    if ";" in value:
        kind, _, rest = value.partition(";")
        if len(kind) <= 20 and " " not in kind.strip():
            return rest.strip()
    return value.strip()


# RFC 3464 actions; anything else that MTAs write ("expired", "error", "failure",
# "bounced", "undeliverable", "rejected") reports a failure.
_STANDARD_ACTIONS = ("fail", "delay", "deliver", "relay", "expand")


def _action(value: str) -> str | None:
    word = value.strip().lower().split(" ")[0].strip(";,.()") if value.strip() else ""
    if not word:
        return None
    if word.startswith(_STANDARD_ACTIONS):
        return word
    return "failed"


def _is_routable(address: str) -> bool:
    """A final address with a dotted domain (not ``user@localhost`` or a host name)."""
    domain = address.rpartition("@")[2]
    return "." in domain or domain.startswith("[")


def _block_address(block: dict[str, str]) -> str | None:
    """The recipient of a block: Final-Recipient, unless it is an internal form
    (``x-unix; user``, ``@route:user@host``, ``user@localhost``) and the
    Original-Recipient names a real address."""
    candidates: list[str] = []
    for field in ("final-recipient", "original-recipient", "x-actual-recipient"):
        if field in block:
            address = clean_address(_typed_value(block[field]))
            if address:
                candidates.append(address)
    for address in candidates:
        if _is_routable(address):
            return address
    return candidates[0] if candidates else None


def parse_dsn(text: str) -> DsnReport:
    """Parse delivery-status fields from ``text`` (blocks separated by blank lines)."""
    reporting: str | None = None
    recipients: list[DsnRecipient] = []
    for block in _blocks(text):
        if reporting is None and "reporting-mta" in block:
            reporting = _typed_value(block["reporting-mta"]) or None
        if "final-recipient" not in block and "original-recipient" not in block:
            continue
        address = _block_address(block)
        if not address:
            continue
        diag = _typed_value(block.get("diagnostic-code", "")) or None
        status_field = block.get("status", "")
        status = find_status(status_field) or (find_status(diag) if diag else None)
        if status_field and not status:
            short = re.match(r"\s*([245])[.\s]", status_field)
            status = f"{short.group(1)}.0.0" if short else None
        reply = find_reply_code(diag) if diag else None
        raw_action = block.get("action", "").strip().lower() or None
        action = _action(raw_action or "")
        remote = _typed_value(block["remote-mta"]) if "remote-mta" in block else None
        recipients.append(DsnRecipient(address, action, status, reply, diag, remote or None,
                                       raw_action))
    return DsnReport(reporting, tuple(recipients))
