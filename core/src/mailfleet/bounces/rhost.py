"""Per-receiving-provider rules: a provider's own error codes and texts mapped to reasons.

Big mailbox providers answer with their own vocabulary (Orange's ``OFR004_505``, Cox's
``CXBL``, Facebook's ``RCP-P2``, Yahoo's "dd This user doesn't have a yahoo.com account"),
and they mean the same thing whatever the SMTP command or the (often generic) status code
said. A rule applies when the remote MTA (DSN ``Remote-MTA``, Postfix "host X said",
Sendmail "while talking to X"), or failing that the recipient's domain, belongs to the
provider; a few codes carry the provider's name themselves and need no host.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mailfleet.bounces.prefilter import Phrases

_Rule = Callable[[str, str, str | None], str | None]

_HOST_IN_TEXT = Phrases(  # "h(?<!\wh)ost" is "\bhost" starting with its letter (faster search)
    r"(?:h(?<!\wh)ost\s+|while talking to\s+|remote system:\s*dns;\s*|\[)"
    r"([a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)+\.[a-z]{2,})\b", re.IGNORECASE)

# Orange / Wanadoo / La Poste: "... OFR005_505 [505]", "LPN007_416", "OUK_513"; the last
# three digits name the cause.
_FRANCEPTT_CODE = re.compile(r"\b(?:ofr|lpn|ouk)\d*_(\d{3})\b")
_FRANCEPTT: dict[str, str] = {
    "102": "blocked", "103": "blocked", "104": "toomanyconn", "108": "blocked",
    "305": "securityerror", "401": "authfailure", "402": "securityerror",
    "403": "rejected", "405": "rejected", "415": "rejected", "421": "rejected",
    "416": "userunknown", "418": "userunknown", "417": "mailboxfull", "420": "suspend",
    "505": "systemerror", "506": "spamdetected", "510": "blocked", "514": "mesgtoobig",
    "630": "policyviolation",
}


def _franceptt(low: str, _raw: str, _status: str | None) -> str | None:
    match = _FRANCEPTT_CODE.search(low)
    return _FRANCEPTT.get(match.group(1)) if match else None


def _phrases(table: tuple[tuple[str, str], ...]) -> _Rule:
    compiled = tuple((reason, re.compile(rx)) for reason, rx in table)

    def rule(low: str, _raw: str, _status: str | None) -> str | None:
        for reason, rx in compiled:
            if rx.search(low):
                return reason
        return None
    return rule


# Yahoo Inc. (Yahoo, AOL): its own texts, whatever the SMTP command was.
_yahoo = _phrases((
    ("userunknown", r"(user|account) (doesn.t|does not) (have a \S+ account|exist)|"
                    r"this account does not exist|mailbox not found"),
    ("suspend", r"this mailbox is disabled|account (is )?(disabled|inactive)"),
    ("blocked", r"\[ts(s)?0?9\]|permanently deferred|\[bl2[13]\]"),
))
# Google (Gmail, Workspace): "The email account that you tried to reach ..."
_google = _phrases((
    ("userunknown", r"account that you tried to reach does not exist"),
    ("suspend", r"account that you tried to reach is (disabled|inactive)"),
    ("mailboxfull", r"account that you tried to reach is over quota|out of storage"),
    ("blocked", r"not authorized to send email directly to our servers"),
))
# Microsoft (Outlook.com, Hotmail, Exchange Online Protection)
_microsoft = _phrases((
    ("userunknown", r"requested action not taken: mailbox unavailable|"
                    r"recipient address rejected: access denied|"
                    r"remote server returned unknown recipient"),
    ("blocked", r"service unavailable, client host .{0,60} blocked|"
                r"messages from \S+ weren.t sent|\b(s3150|s3140|sc-00[124])\b"),
))
# KDDI / au (ezweb.ne.jp, au.com): "550 <addr>: User unknown" is a missing mailbox,
# "550 : User unknown" (no address) the recipient's own filter.
_KDDI_FILTER = re.compile(r"\b550 ?: ?user unknown")
_KDDI_USER = re.compile(r">: ?user unknown")


def _kddi(_low: str, raw: str, _status: str | None) -> str | None:
    raw_low = raw.lower()
    if _KDDI_FILTER.search(raw_low):
        return "filtered"
    if _KDDI_USER.search(raw_low):
        return "userunknown"
    return None


# NTT docomo answers "550 Unknown user" both to missing mailboxes (at RCPT) and to the
# recipient's domain/sender rejection settings (after DATA).
def _docomo(low: str, _raw: str, status: str | None) -> str | None:
    if "unknown user" not in low:
        return None
    parts = (status or "").split(".")
    if len(parts) == 3 and parts[1] == "1" and parts[2] == "1":
        return "userunknown"
    if len(parts) == 3 and parts[1] == "2":
        return "filtered"
    return None  # decided with the SMTP command by the caller


# Facebook: codes documented at postmaster.facebook.com/response_codes
_facebook = _phrases((
    ("userunknown", r"\brcp-p1\b"), ("filtered", r"\brcp-p2\b"), ("suspend", r"\brcp-p3\b"),
    ("mesgtoobig", r"\bmsg-p1\b"), ("requireptr", r"\brdns-p[12]\b"),
    ("toomanyconn", r"\bcon-t[1-4]\b"), ("blocked", r"\bpol-p[1-7]\b|\bpol-t[1-3]\b"),
))
# Cox: "CXBL", "IPBL0001" (sending IP listed), "CXDNS" (no reverse DNS) ...
_cox = _phrases((
    ("blocked", r"\bcxbl\b|\bipbl\d*\b"), ("requireptr", r"\bcxdns\b"),
    ("rejected", r"\bcxsndr\b"), ("toomanyconn", r"\bcxcnct\b"), ("spamdetected", r"\burlbl\b"),
))
# Mimecast: "554 Email rejected due to security policies" is its malware verdict.
_mimecast = _phrases((
    ("virusdetected", r"rejected due to security policies"),
    ("userunknown", r"\binvalid recipient\b"),
))
# Zoho: a message its filter judged spam is refused as a whole ("rejected").
_zoho = _phrases((("rejected", r"email flagged as spam"),))
# Tencent (QQ mail)
_tencent = _phrases((
    ("toomanyconn", r"connection frequency limited"),
    ("userunknown", r"mailbox not found|mailbox unavailable or access denied"),
    ("mailboxfull", r"mailbox is full|over quota"),
))

# (domains, rule): a host belongs to the first provider one of whose domains it is or ends
# in (after a dot).
_PROVIDERS: tuple[tuple[str, _Rule], ...] = (
    (r"orange\.fr|wanadoo\.fr|laposte\.net|francetelecom\.\w+", _franceptt),
    (r"yahoodns\.net|yahoo\.(?:com|co\.\w+|\w{2})|ymail\.com|aol\.com|yahoo\.net", _yahoo),
    (r"google\.com|googlemail\.com|gmail\.com", _google),
    (r"outlook\.com|hotmail\.\w+|live\.\w+|msn\.com|protection\.outlook\.com|office365\.com",
     _microsoft),
    (r"ezweb\.ne\.jp|au\.com|kddi\.com", _kddi),
    (r"docomo\.ne\.jp", _docomo),
    (r"facebook\.com|fb\.com", _facebook),
    (r"cox\.net", _cox),
    (r"mimecast\.(?:com|co\.\w+)", _mimecast),
    (r"zoho\.com|zohomail\.com", _zoho),
    (r"qq\.com|exmail\.qq\.com", _tencent),
)
_GMAIL_MX = "gmail-smtp-in"
"""Google's MX hosts (gmail-smtp-in.l.google.com) are Google's whatever follows."""
_DOMAINS = re.compile("|".join(f"({domains})" for domains, _rule in _PROVIDERS))
"""Group N matches a domain of the N-th provider (matched whole: the first such group)."""


def _provider(name: str) -> _Rule | None:
    """The rule of the first provider that ``name`` (a host name) belongs to: the name, or
    the part after one of its dots, is one of its domains (a Gmail MX name is Google's)."""
    first = len(_PROVIDERS)
    if name.startswith(_GMAIL_MX):
        first = next(n for n, (_d, rule) in enumerate(_PROVIDERS) if rule is _google)
    start = 0
    while start >= 0:
        match = _DOMAINS.fullmatch(name, start)
        if match and match.lastindex is not None and match.lastindex - 1 < first:
            first = match.lastindex - 1
        dot = name.find(".", start)
        start = dot + 1 if dot >= 0 else -1
    return _PROVIDERS[first][1] if first < len(_PROVIDERS) else None


# Codes that name their provider by themselves.
_SELF_NAMED: tuple[tuple[re.Pattern[str], _Rule], ...] = (
    (re.compile(r"\b(?:ofr|lpn|ouk)\d*_\d{3}\b"), _franceptt),
    (re.compile(r"postmaster\.facebook\.com"), _facebook),
)


def remote_host(text: str | None) -> str | None:
    """The remote MTA a report's text names ("host mx.example.com[192.0.2.1] said")."""
    if not text:
        return None
    match = _HOST_IN_TEXT.search(text)
    return match.group(1).lower().rstrip(".") if match else None


def _host_name(value: str | None) -> str:
    if not value:
        return ""
    token = value.strip().split()[0] if value.strip() else ""
    return token.strip("[]();").lower().rstrip(".")


def by_host(hosts: tuple[str | None, ...], text: str | None, status: str | None,
            command: str | None = None) -> str | None:
    """The reason a provider's own rule gives, or None.

    ``hosts`` are tried in order (remote MTA, the recipient's domain, then the reporting
    MTA: a provider's own notice quotes its own servers)."""
    raw = text or ""
    low = " ".join(raw.lower().split())
    if not low:
        return None
    rule: _Rule | None = None
    for value in hosts:
        name = _host_name(value)
        rule = _provider(name) if name else None
        if rule:
            break
    if rule is None:
        for pattern, candidate in _SELF_NAMED:
            if pattern.search(low):
                rule = candidate
                break
    if rule is None:
        return None
    reason = rule(low, raw, status)
    if reason is None and rule is _docomo and "unknown user" in low:
        reason = {"RCPT": "userunknown", "DATA": "rejected"}.get(command or "")
    return reason
