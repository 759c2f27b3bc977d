"""Amazon SES notifications delivered by e-mail (SNS JSON: Bounce, Complaint, Delivery)."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from mailfleet.bounces.codes import clean_address, find_reply_code, find_status

_HINT = re.compile(r'"notificationType"\s*:\s*"(Bounce|Complaint|Delivery)"')


@attrs.frozen
class SesRecipient:
    """One recipient of an SES notification."""

    address: str
    status: str | None
    reply_code: str | None
    diagnostic: str | None


@attrs.frozen
class SesNotification:
    """``kind`` is bounce, delay (transient bounce), feedback or delivered."""

    kind: str
    recipients: tuple[SesRecipient, ...]
    message_id: str | None
    reporting_mta: str | None


_DECODER = json.JSONDecoder()
_MAX_STARTS = 8
"""JSON is tried from at most this many ``{`` (an SES body is one JSON object)."""


def _load(text: str) -> dict[str, Any] | None:
    """The first JSON object of ``text`` (lines joined: mailers wrap long lines).

    ``raw_decode`` reads one value and stops, so each try is linear; only the first few
    ``{`` are tried."""
    flat = "".join(text.split("\n"))
    start = flat.find("{")
    for _ in range(_MAX_STARTS):
        if start < 0:
            return None
        try:
            data, _end = _DECODER.raw_decode(flat, start)
        except ValueError:
            start = flat.find("{", start + 1)
            continue
        return data if isinstance(data, dict) else None
    return None


def parse_ses(text: str) -> SesNotification | None:
    """Parse an SES notification body, or return None if ``text`` holds none."""
    hint = _HINT.search(text)
    if not hint:
        return None
    data = _load(text) or {}
    ntype = str(data.get("notificationType") or hint.group(1))
    mail = data.get("mail") if isinstance(data.get("mail"), dict) else {}
    assert isinstance(mail, dict)
    msg_id = mail.get("messageId")
    recipients: list[SesRecipient] = []
    if ntype == "Bounce":
        bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
        assert isinstance(bounce, dict)
        kind = "delay" if str(bounce.get("bounceType", "")).lower() == "transient" else "bounce"
        mta = bounce.get("reportingMTA")
        for item in bounce.get("bouncedRecipients") or []:
            if not isinstance(item, dict):
                continue
            addr = clean_address(str(item.get("emailAddress", "")))
            diag = str(item.get("diagnosticCode") or "") or None
            status = str(item.get("status") or "") or (find_status(diag) if diag else None)
            if addr:
                recipients.append(SesRecipient(addr, find_status(status or "") or status,
                                               find_reply_code(diag or ""), diag))
    elif ntype == "Complaint":
        kind, mta = "feedback", None
        complaint = data.get("complaint") if isinstance(data.get("complaint"), dict) else {}
        assert isinstance(complaint, dict)
        for item in complaint.get("complainedRecipients") or []:
            addr = clean_address(str(item.get("emailAddress", ""))) if isinstance(item, dict) \
                else None
            if addr:
                recipients.append(SesRecipient(addr, None, None, None))
    else:
        kind = "delivered"
        delivery = data.get("delivery") if isinstance(data.get("delivery"), dict) else {}
        assert isinstance(delivery, dict)
        mta = delivery.get("reportingMTA")
        for raw in delivery.get("recipients") or []:
            addr = clean_address(str(raw))
            if addr:
                diag = str(delivery.get("smtpResponse") or "") or None
                recipients.append(SesRecipient(addr, find_status(diag or "") or "2.0.0",
                                               find_reply_code(diag or ""), diag))
    if not recipients and not data:
        for raw in re.findall(r'"emailAddress"[ \t]*:[ \t]*"([^"\n]{1,320})"', text):
            addr = clean_address(raw)
            if addr:
                recipients.append(SesRecipient(addr, None, None, None))
    return SesNotification(kind, tuple(recipients), str(msg_id) if msg_id else None,
                           str(mta) if mta else None)
