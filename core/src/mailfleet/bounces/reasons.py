"""Reason classification: map an RFC 3463 status and the diagnostic text to :data:`REASONS`."""

from __future__ import annotations

import re

from mailfleet.bounces.prefilter import Phrases, RuleSet

HARD_REASONS = frozenset({"userunknown", "hostunknown", "hasmoved"})

# Ordered: the first matching pattern wins. Texts are matched lower-cased, spaces collapsed.
_TEXT_RULES: tuple[tuple[str, str], ...] = (
    ("virusdetected", r"virus|malware|infected|trojan"),
    ("filtered", r"domain filter|recipient.{0,20}filter"),
    ("notcompliantrfc", r"multiple .{0,20}addresses in from|not rfc ?5322 compliant"),
    ("policyviolation", r"content presents a potential"),
    ("contenterror", r"headers? (are |is )?too (large|long|big)"),
    ("hostunknown", r"account or domain may not exist"),
    # the envelope sender (not the recipient) was refused: Postfix "Sender address rejected:
    # Domain not found", "sender domain must exist", Exim "sender verify failed"
    ("rejected", r"sender address rejected|sender domain (does not exist|not found|unknown|"
                 r"must (exist|resolve))|domain of sender address|sender verif(y|ication) "
                 r"failed|sender('s)? domain \S{1,100} (does not exist|not found)|"
                 r"unverified sender"),
    # greylisting: a temporary refusal of the sending host, never a dead address
    ("blocked", r"gr[ae]y-?list"),
    ("systemerror", r"insufficient system (storage|resources)|could not load drd for domain"),
    ("requireptr", r"unverif(y|i)able sending ip"),
    # a message too big, named before "exceeded ... size limit" of a full mailbox
    ("mesgtoobig", r"line limit exceeded|"
                   r"message (size )?(is )?(too (big|large)|larger than|exceeds)|"
                   r"message size.{0,40}(exceed|limit|too)|exceed.{0,30}message size|"
                   r"size of (the|your) message|nachricht (ist )?zu gro|"
                   r"message trop (gros|volumineux)|"
                   r"mensaje (es )?demasiado grande"),
    ("networkerror", r"host not found, try again|host not reachable|temporary (dns|lookup|name) |"
                     r"dns.{0,30}temporar|lookup.{0,30}timed? ?out"),
    # a mail loop is named before the generic "maximum ... times" of expired
    ("networkerror", r"mail loop|routing loop|loops? (back|detected)|too many hops|"
                     r"hop count exceeded|forwarded more than|network error|"
                     r"host name lookup failure"),
    ("expired", r"did not accept our requests to connect|has not been collected|"
                r"(was|has been|have been) (unable|failing)|message (has been )?expired|"
                r"envelope expired"),
    ("requireptr", r"\bptr\b|name lookup failed|reverse (dns|lookup|hostname)|rdns|no ptr|"
                   r"cannot find your hostname|client host .{0,40}not found|"
                   r"does not resolve|unresolvable|hostname .{0,30}(not|doesn.t) (match|resolve)"),
    ("notaccept", r"null mx|no mx record|couldn.t find a mail exchanger|"
                  r"name service error for name=\S+ type=mx|does not accept mail|"
                  r"doesn.t receive (e-?)?mail|accepts? no mail"),
    ("authfailure", r"\b(dmarc|spf|dkim)\b.{0,40}(fail|check|policy|reject|align|not pass|"
                    r"invalid|violat|quarantine|none\b)|unauthenticated (email|mail)|"
                    r"authentication (failure|failed|check)|sender is unauthenticated|"
                    r"sender policy framework|domainkeys|"
                    r"(fail(s|ed)?|not pass|does not pass|didn.t pass|failed to pass).{0,30}"
                    r"\b(dmarc|spf|dkim)\b|\bspf\b.{0,60}not (allowed|authorized|permitted)|"
                    r"(is|was) unauthenticated|\bdmarc\b"),
    ("securityerror", r"smtp authentication|tls (is )?required|tls not available|"
                      r"requires? (a )?(secure|tls|encrypted)|starttls|encryption|must use tls|"
                      r"must be encrypted|"
                      r"authentication required|not authenticated|auth.* required|"
                      r"relay access.*auth|insecure|5\.7\.515|does not meet the required"),
    ("norelaying", r"relay(ing)? (access )?(denied|not permitted|prohibited|not allowed)|"
                   r"not permitted to relay|unable to relay|no relaying|we do not relay|"
                   r"relaying denied|not a gateway|cannot be used to relay|relay not"),
    # a listed link in the content, then a listed sending host
    ("spamdetected", r"blacklisted (url|uri|link|domain)|\buribl\b|\bsurbl\b"),
    ("blocked", r"block ?list|black ?list|\bdnsbl\b|\brbl\b"),
    ("badreputation", r"reputation|sender ?score|senderbase|unexpected volume|"
                      r"user complaints"),
    # the sending IP itself is refused, even when spam is named as the cause
    ("blocked", r"(client|source|sending|your) (ip|host)( address)? .{0,20}(blocked|bloquee)|"
                r"adresse ip .{0,20}bloquee|messages from \d{1,3}(\.\d{1,3}){3}|"
                r"sent from the following ip|use the smtp server of your"),
    ("spamdetected", r"spam(?!haus|cop)|unsolicited|bulk mail|junk mail|blocked by content filter|"
                     r"scored too high|classified as|considered as|content.{0,20}rejected|"
                     r"message.{0,20}looks? like|suspicious|"
                     r"blacklisted (url|uri|link|domain)|uribl|surbl"),
    ("toomanyconn", r"too many (connections|sessions|concurrent|simultaneous|recipients)|"
                    r"connection (limit|rate|frequency)|frequency limited"),
    ("speeding", r"rate limit|too many (messages|mails|emails)|sending rate|unusual rate|"
                 r"exceeded.{0,20}(rate|velocity)|throttl|slow down|receiving mail at a rate"),
    ("blocked", r"refused to talk to me|server refused|blacklist|blocklist|block ?list|"
                r"black ?list|\bdnsbl|\brbl\b|spamhaus|"
                r"spamcop|sorbs|barracudacentral|(?<!not )listed (at|in|on|by)|"
                r"(your|the|sending|client) (ip|host|server|network)(.{0,30}) "
                r"(is |has been |was )?(blocked|rejected|banned|denied|not allowed)|"
                r"connection (refused|rejected|denied)|bloque|"
                r"\bblocked\b.{0,30}\b(ip|host|address|network)\b|"
                r"\b(ip|host|network)\b.{0,30}\bblocked\b|poor reputation|"
                r"not allowed to (send|connect)|banned|too many (invalid|bad)|"
                r"service unavailable.{0,20}client host"),
    ("hasmoved", r"has moved|address.{0,20}changed|no longer (at|with)|moved to|"
                 r"forwarding address|user has moved"),
    ("mailboxfull", r"mailbox (is |was )?full|over ?quota|quota (exceeded|violation|full)|"
                    # German, French, Spanish, Italian, Portuguese, Dutch, Japanese, Chinese
                    r"postfach (ist )?(voll|überfüllt)|speicherplatz.{0,40}(erschöpft|"
                    r"überschritten|voll)|quota überschritten|speicher.{0,20}voll|"
                    r"bo[iî]te (aux lettres |de réception )?(est )?(pleine|saturée)|"
                    r"quota (dépassé|atteint)|buz[oó]n (de correo )?(est[aá] )?lleno|"
                    r"cuota (excedida|superada)|casella (postale )?piena|"
                    r"caixa (postal |de correio )?(est[aá] )?cheia|mailbox (is )?vol|"
                    r"メールボックスがいっぱい|容量(超過|オーバー|不足)|邮箱(已)?满|"
                    r"信箱(已)?满|空间不足|exhausted.{0,30}(storage|space|quota)|"
                    r"exceeded.{0,30}(quota|storage|size limit)|mailbox.{0,30}(size|storage) "
                    r"limit|insufficient (disk )?(space|storage)|not enough (space|storage)|"
                    r"space not enough|disk (full|quota)|mail ?folder is full|"
                    r"mailbox.{0,30}exceed|account.{0,20}(is )?full|storage (full|quota)|"
                    r"ящик переполнен|переполнен|превышен.{0,20}(квот|размер)|"
                    r"number of messages.{0,40}exceeded|full mailbox|too much mail|"
                    r"user.{0,20}over.{0,10}quota|mailbox size|\bquota\b"),
    ("mesgtoobig", r"message (is )?too (big|large)|message size.{0,40}(exceed|limit|too)|"
                   r"size limit|exceeds? .{0,30}size|message length exceeds|too large|"
                   r"maximum (message )?size"),
    ("exceedlimit", r"exceeded.{0,30}limit|limit.{0,20}exceeded|too many recipients|"
                    r"recipient limit"),
    ("suspend", r"(?<!temporarily )suspend|disabled|deactivated|inactive|not active|discontinued|"
                r"account.{0,30}(locked|frozen|expired|closed|blocked)|"
                r"mailbox.{0,20}(disabled|inactive|locked|frozen)|frozen|"
                r"account.{0,20}(temporarily )?(unavailable|locked)|blocked (account|mailbox|user)|"
                r"(user|recipient).{0,20}(blocked|locked)|заблокирован|отключен|"
                r"(konto|postfach|benutzer|mailbox|account).{0,20}(gesperrt|deaktiviert)|"
                r"(compte|bo[iî]te).{0,20}(désactivée?|suspendue?|bloquée?)|"
                r"cuenta.{0,20}(suspendida|desactivada|bloqueada)|"
                r"account.{0,20}(sospeso|disattivato)|停止|無効"),
    ("hostunknown", r"host (or domain name )?not found|unknown host|no such (host|domain)|"
                    r"\bdomain \S{1,100} (does not exist|doesn.t exist|not found)|"
                    r"host unknown|domain (not found|does not exist|unknown|doesn.t exist|"
                    r"name not found)|unrouteable|unroutable|"
                    r"name service error|nxdomain|mx (record|host).{0,20}"
                    r"(not|no)|unknown (mail )?domain|"
                    r"dns (error|failure)|host.{0,20}(could not|cannot) be (found|resolved)|"
                    r"domain.{0,40}(is not|isn.t) (valid|registered)|all relevant mx"),
    ("userunknown", r"user (is )?unknown|unknown (user|recipient|address|local|mailbox|alias)|"
                    r"no such (user|mailbox|recipient|address|account|local)|"
                    r"(user|recipient|mailbox|address|account)s? .{0,30}"
                    r"(does not|doesn.t|did not|not) exist|invalid (recipient|mailbox|user)|"
                    r"(recipient|user|mailbox|addressee) (is )?(not found|unknown|invalid|"
                    r"not recognized)|not listed in|not our customer|"
                    r"bad destination|no (mailbox|account) (here|by that name)|"
                    r"undeliverable address|mailbox not found|address not found|"
                    r"no longer valid|no longer exists|recipientnotfound|"
                    r"not a (valid )?user|no valid recipients|doesn.t have a .{0,40}account|"
                    r"does not have a final|user not found|unknown or illegal|"
                    r"addressee unknown|invalid address|email address.{0,40}(wasn.t|was not) found|"
                    r"нет такого|не существует|не найден|user not local|wrong address|"
                    r"dosn't exist|check (if|that|whether) (the )?address is correct|"
                    r"address.{0,40}(couldn.t|could not|cannot|can.t) be found|"
                    r"mailbox (is )?(currently )?(unavailable|not available)|"
                    r"recipient.{0,10}not found|"
                    # German, French, Spanish, Italian, Portuguese, Dutch
                    r"benutzer (ist )?unbekannt|unbekannte[rs]? (empfänger|benutzer|adresse|"
                    r"postfach)|(empfänger|postfach|mailbox|adresse)(adresse)? (ist )?unbekannt|"
                    r"existiert nicht|gibt es nicht|"
                    r"utilisateur inconnu|destinataire inconnu|adresse (e-?mail )?inconnue|"
                    r"(adresse|destinataire) (du )?destinataire invalide|"
                    r"adresse destinataire invalide|n'existe pas|inexistant|"
                    r"usuario (desconocido|inexistente|no existe)|destinatario desconocido|"
                    r"(no|não) existe|direcci[oó]n (de correo )?(no v[aá]lida|inv[aá]lida|"
                    r"desconocida)|utente (sconosciuto|inesistente)|indirizzo inesistente|"
                    r"usu[aá]rio desconhecido|utilizador desconhecido|onbekende gebruiker|"
                    r"bestaat niet|"
                    # Russian, Japanese, Chinese
                    r"неизвестн(ый|ого) (пользовател|адрес|получател)|"
                    r"宛先不明|存在しない|存在しません|ユーザー?(が)?(不明|見つかりません)|"
                    r"用户不存在|收件人不存在|地址不存在|无此用户|帐户不存在|账户不存在"),
    ("filtered", r"filter|rejected by (the )?recipient|refused by (the )?recipient|"
                 r"recipient (refused|rejected)|not accepting (mail|messages)|"
                 r"does not (wish|want) to receive|denied by (the )?(user|recipient)|"
                 r"not authorized to (send|receive)|content rejected|"
                 r"sender (is )?blocked by (the )?recipient|blocked by (the )?recipient"),
    ("syntaxerror", r"syntax error|command unrecognized|bad sequence|unrecognized command|"
                    r"parameter not implemented|"
                    r"command not (implemented|recognized)|invalid command"),
    ("notcompliantrfc", r"rfc ?(2822|5322|822|5321)|not (rfc|standards?)[ -]compliant|"
                        r"duplicate header|malformed|missing.{0,20}header|"
                        r"header.{0,30}(invalid|missing|duplicate)|bare (lf|cr)"),
    ("policyviolation", r"policy|prohibited|not permitted|not allowed|violat|"
                        r"content restriction|"
                        r"administrative(ly)? prohibited"),
    ("notaccept", r"not accept|does not accept|null mx|no mail service|"
                  r"accepts? no mail|does not receive mail"),
    ("rejected", r"sender.{0,40}(rejected|denied|refused|blocked|not allowed|invalid|"
                 r"unknown)|from.{0,20}(rejected|denied)|domain of sender|"
                 r"mail from.{0,30}(rejected|refused)|envelope sender|return path|"
                 r"sender address|bad sender|sender verify|sender verification"),
    ("expired", r"retry time(out)? (not reached|exceeded)|expired|too long|"
                r"could not be delivered (for|within)|timed? ?out|has not been collected|"
                r"attempts? (have|has) (been )?(unsuccessful|failed)|stopped trying|"
                r"unsuccessful for|"
                r"giving up|gave up|delivery time|exceeded.{0,30}(delivery )?attempts|"
                r"maximum.{0,20}(time|attempts)|retry (limit|period)|was not delivered "
                r"after|failed \d+ attempts|undeliverable for|queue|delayed"),
    ("networkerror", r"connection (timed out|reset|lost|closed|dropped)|"
                     r"network (error|unreachable|is unreachable)|no route to host|"
                     r"routing loop|mail loop|loop(s)? (back|detected)|too many hops|"
                     r"lost connection|could not connect and send|"
                     r"connect(ion)? to .{0,60} failed|hop count exceeded|"
                     r"remote host .{0,30}(down|unreachable)"),
    ("mailererror", r"mailer error|command (died|failed)|exit (code|status)|"
                    r"program.{0,20}(error|failed)|child status|local delivery failed|"
                    r"procmail|\bpipe\b"),
    ("systemerror", r"system error|internal (server )?error|server error|"
                    r"temporary (local )?problem|local error|configuration error|"
                    r"i/o error|too many hops|unavailable|try again|resources|"
                    r"service not available|temporar(il)?y (rejected|failure|error)|"
                    r"transaction failed"),
    ("onhold", r"on hold|held for"),
    ("rejected", r"not have permission to post|not (a )?member|permission to post|"
                 r"members-only|not allowed to post"),
)
_WEAK_RULES: tuple[tuple[str, str], ...] = (
    ("userunknown", r"recipient address rejected|mailbox unavailable|does not exist|no such|"
                    r"not found|not recognized|account.{0,30}(not available|unavailable)|"
                    r"unknown|rejected"),
    ("blocked", r"access denied|denied"),
    ("contenterror", r"content|mime|attachment|encoding|8bit|illegal character"),
)
_STRONG_SET = RuleSet(_TEXT_RULES)
_WEAK_SET = RuleSet(_WEAK_RULES)
# The SMTP command a refusal answered, as the MTAs name it: Postfix "(in reply to RCPT TO
# command)", Exim "SMTP error from remote mail server after RCPT TO:<..>", Sendmail
# transcripts ">>> RCPT To:<..>", Yahoo "[RCPT_TO]", "did not like our RCPT TO", qmail
# "Connected to .. but sender was rejected". The last one named wins; explicit forms
# (after/in reply to/>>>) are preferred to a bare command word.
_CMD_WORDS = (("RCPT", r"rcpt(?:[ _]to)?"), ("MAIL", r"mail from"),
              ("DATA", r"(?:end of )?data"), ("HELO", r"helo|ehlo"))
_EXPLICIT: tuple[tuple[str, Phrases], ...] = (
    # "a(?<!\wa)fter" is "\bafter" written to start with its letter (see codes.STATUS_RE)
    *((name, Phrases(r"(?:>>>|a(?<!\wa)fter|i(?<!\wi)n reply to|d(?<!\wd)id not like our|\[)"
                     r"\s*+" + word + r"\b", re.IGNORECASE)) for name, word in _CMD_WORDS),
    ("RCPT", Phrases(r"recipient was rejected", re.I)),
    ("MAIL", Phrases(r"sender was rejected", re.I)),
    ("HELO", Phrases(r"my name was rejected", re.I)),
    ("CONN", Phrases(r"after initial connection|smtp greeting|banner", re.I)),
)
_BARE: tuple[tuple[str, Phrases], ...] = (
    ("RCPT", Phrases(r"\bRCPT(?:\b|_)")),
    ("MAIL", Phrases(r"\bMAIL FROM\b")),
    ("DATA", Phrases(r"\bDATA\b|end of data", re.I)),
)


def _command_words() -> tuple[str, ...] | None:
    words: set[str] = set()
    for _name, rx in (*_EXPLICIT, *_BARE):
        if rx.words is None:
            return None
        words.update(rx.words)
    return tuple(sorted(words))


_COMMAND_WORDS = _command_words()
"""One of these is in every text that names a command (most texts name none)."""


def smtp_command(text: str | None) -> str | None:
    """The SMTP command (RCPT, MAIL, DATA, HELO, CONN) that ``text`` says was refused."""
    if not text:
        return None
    low = text.lower()
    if _COMMAND_WORDS is not None:
        for word in _COMMAND_WORDS:
            if word in low:
                break
        else:
            return None
    for table in (_EXPLICIT, _BARE):
        best: tuple[int, str] | None = None
        for name, rx in table:
            for match in rx.finditer(text, low=low):
                if best is None or match.start() >= best[0]:
                    best = (match.start(), name)
        if best:
            return best[1]
    return None


# look-behinds after the first digit (see codes.STATUS_RE): searched for the digit first
_CONTINUATION = re.compile(r"[245](?<=\s[245])\d\d[- ](?:[245]\.\d{1,3}\.\d{1,3}\s)?")
_SYNTAX_REPLY = re.compile(r"5(?<![\d.]5)0[0-4](?![\d.])")
_REPLY = re.compile(r"[45](?<![\d.][45])\d\d(?![\d.])")


_STATUS_RULES: dict[str, str] = {
    "1.0": "userunknown", "1.1": "userunknown", "1.2": "hostunknown", "1.3": "userunknown",
    "1.4": "userunknown", "1.5": "userunknown", "1.6": "hasmoved", "1.7": "rejected",
    "1.8": "rejected", "1.9": "hostunknown", "1.10": "userunknown",
    "2.0": "mailboxfull", "2.1": "suspend", "2.2": "mailboxfull", "2.3": "exceedlimit",
    "2.4": "mailererror", "3.0": "systemerror", "3.1": "mailboxfull", "3.2": "notaccept",
    "3.3": "systemerror", "3.4": "mesgtoobig", "3.5": "systemerror",
    "4.0": "networkerror", "4.1": "networkerror", "4.2": "networkerror",
    "4.3": "systemerror", "4.4": "hostunknown", "4.5": "networkerror",
    "4.6": "networkerror", "4.7": "expired",
    "5.0": "syntaxerror", "5.1": "syntaxerror", "5.2": "syntaxerror", "5.3": "exceedlimit",
    "5.4": "syntaxerror", "5.5": "syntaxerror", "6.0": "contenterror",
    "7.0": "policyviolation", "7.1": "rejected", "7.2": "rejected", "7.3": "securityerror",
    "7.4": "securityerror", "7.5": "securityerror", "7.6": "securityerror",
    "7.7": "securityerror", "7.8": "authfailure", "7.9": "securityerror",
    "7.13": "suspend", "7.20": "authfailure", "7.21": "authfailure", "7.22": "authfailure",
    "7.23": "authfailure", "7.24": "authfailure", "7.25": "requireptr", "7.26": "authfailure",
    "7.27": "authfailure", "7.28": "speeding", "7.29": "securityerror",
    "7.30": "authfailure", "7.32": "authfailure", "7.509": "authfailure",
    "7.510": "authfailure", "7.515": "securityerror", "7.54": "norelaying",
    "7.64": "norelaying", "7.57": "securityerror", "7.606": "blocked", "7.607": "blocked",
    "7.708": "blocked", "7.750": "blocked",
}
# Codes whose meaning is precise enough to trust over the free text.
# X.1.10 is not: RFC 7505 gave it to null MX (notaccept), Exchange uses it for an unknown
# recipient; the text tells which (both are hard).
_DECISIVE = frozenset({"1.1", "1.2", "1.6", "1.7", "1.8", "2.2", "2.3", "3.4",
                       "7.26", "7.27", "7.28", "7.30",
                       "7.32", "7.509", "7.515", "7.23", "7.25", "7.54", "7.606", "7.13"})


def _subject_detail(status: str) -> str:
    parts = status.split(".")
    return ".".join(parts[1:3]) if len(parts) == 3 else ""


def _by_text(low: str, detail: str) -> tuple[str | None, bool]:
    """The first matching reason and whether it came from the specific (not weak) rules."""
    for strong, rules in ((True, _STRONG_SET), (False, _WEAK_SET)):
        for number in rules.matching(low):
            reason = rules.labels[number]
            if reason == "spamdetected" and detail.startswith("1."):
                continue
            return reason, strong
    return None, False


def classify(status: str | None, text: str | None, *, temporary: bool = False,
             context: str | None = None, remote: bool = False,
             command: str | None = None) -> str:
    """Return the reason word for an RFC 3463 ``status`` and diagnostic ``text``.

    ``context`` is the surrounding report text: with ``text`` it tells the SMTP command that
    was refused; ``remote`` says ``text`` is a remote server's answer (a DSN Diagnostic-Code).
    A "user unknown" wording is only trusted at RCPT TO (or with an X.1.1-type
    status); given after DATA, or with no command at all, it comes from a filter on the
    receiving side (sisimai's ``filtered``); at MAIL FROM the sender was refused.
    """
    detail = _subject_detail(status) if status else ""
    if detail in _DECISIVE:
        return _STATUS_RULES[detail]
    # continuation prefixes ("550-5.7.1 ") split phrases of multi-line replies
    low = " ".join(_CONTINUATION.sub(" ", (text or "").lower()).split())
    reason, strong = _by_text(low, detail) if low else (None, False)
    command = command or smtp_command(text) or smtp_command(context)
    if command in {"HELO", "CONN"} and reason != "networkerror":
        return "blocked"  # refused before any envelope: the sending host itself
    if command == "MAIL" and (not strong or reason in {
            None, "userunknown", "hostunknown", "suspend", "filtered", "undefined"}):
        return "rejected"
    # only a remote server's SMTP reply (it has a reply code) can come after RCPT; the
    # reporting host's own "unknown user" is a directory lookup
    if reason == "userunknown" and strong and command != "RCPT" and \
            _STATUS_RULES.get(detail) != "userunknown" and (
                remote or _REPLY.search(text or "")):
        return "filtered"
    if reason == "hostunknown" and status and status[0] == "4":
        return "networkerror"  # a temporary DNS failure, not a missing domain
    if reason:
        return reason
    if detail in _STATUS_RULES:
        return _STATUS_RULES[detail]
    if temporary:
        return "expired"
    if _SYNTAX_REPLY.search(text or ""):
        return "syntaxerror"
    # sisimai's convention: a diagnostic that names no known reason is "on hold"
    return "onhold" if low else "undefined"


# RFC 3463 / RFC 5248 codes that say the address itself is dead: X.1.1 bad destination
# mailbox, X.1.2 bad destination system (no such domain), X.1.6 mailbox moved with no
# forwarding address, X.1.10 null MX (RFC 7505).
_DEAD_CODES = frozenset({"1.1", "1.2", "1.6", "1.10"})
# Codes too vague to say anything about the address: then only the text can.
_GENERIC_CODES = frozenset({"", "0.0", "1.0", "5.0", "2.0", "4.0", "3.0"})


#: With a generic code the text alone must carry the evidence: an SMTP reply of its own
#: (5xx, as every MTA quotes the remote reply) and no word of a transport failure (a reset
#: or timed-out session says nothing about the address, whatever else the report quotes).
_PERMANENT_REPLY = re.compile(r"5(?<!\d5)\d\d(?:[ -]|$)")
_TRANSPORT_TROUBLE = re.compile(r"connection (?:reset|refused|timed out|closed)|protocol error"
                                r"|timed? ?out|broken pipe")


def is_hard(reason: str, status: str | None, text: str | None, *,
            provider: bool = False) -> bool:
    """True only on evidence that the address itself is dead: a permanent (5.x.x) failure
    with a dead-address code (5.1.1, 5.1.2, 5.1.6, 5.1.10), or a generic or addressing
    code (5.0.0, 5.5.0, none, 5.1.x, 5.2.1) with a text that says so in a specific phrase
    ("user unknown", "no such domain"), or a receiving provider's own rule (``provider``)
    saying so outside a policy refusal (5.7.x). Anything else (5.7.1 with "user unknown",
    4.x.x, a bare "recipient rejected") is soft and counts toward the soft-bounce limit."""
    if not status or status[0] != "5":
        return False
    detail = _subject_detail(status)
    if detail in _DEAD_CODES:
        return reason in HARD_REASONS or (detail == "1.10" and reason == "notaccept")
    if reason not in HARD_REASONS:
        return False
    if provider:
        return not detail.startswith("7.")
    if detail not in _GENERIC_CODES and not detail.startswith("1.") and detail != "2.1":
        return False
    low = " ".join(_CONTINUATION.sub(" ", (text or "").lower()).split())
    if detail in _GENERIC_CODES and (_TRANSPORT_TROUBLE.search(low)
                                     or not _PERMANENT_REPLY.search(text or "")):
        return False
    found, strong = _by_text(low, detail)
    return strong and found == reason
