"""Diagnosing SMTP failures: reply rules as data, and the generic fallback.

Provider plugins describe their replies as :class:`ReplyRule` tables and answer the
``mailfleet_diagnose`` hook with :func:`match_rules`; the core answers every error left.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

from mailfleet.errors import Classification, Diagnosis, SmtpError, Stage
from mailfleet.plugins.providers import Security
from mailfleet.sending.servers import Server

Text = Mapping[str, str]  # locale -> text; "en" is required

#: A link in a reply (for ``ReplyRule.extract``), without trailing punctuation.
REPLY_LINK = r"https?://[^\s<>\"'{}]+[^\s<>\"'{}.,;)]"


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _pick(text: Text, locale: str, values: Mapping[str, str] | None = None) -> str:
    template = text.get(locale) or text["en"]
    return template.format_map(_Values(values or {}))


def duration(seconds: float, locale: str = "en") -> str:
    """``seconds`` as "2 h 30 min" / "2 ч 30 мин"."""
    hours, minutes = divmod(round(seconds / 60), 60)
    h, m = ("ч", "мин") if locale == "ru" else ("h", "min")
    parts = [f"{hours} {h}"] if hours else []
    if minutes or not parts:
        parts.append(f"{minutes} {m}")
    return " ".join(parts)


@attrs.frozen
class ReplyRule:
    """One recognisable server reply and what it means.

    ``pattern`` is a case-insensitive regex searched in the reply text; ``stages`` and
    ``codes`` narrow where it applies (empty: anywhere); ``hosts`` binds the rule to servers
    whose host is one of these domains or below them (the same text from other hosts means
    something else). Texts may use ``{server}``, ``{login}``, ``{reply}``, ``{recipient}``,
    ``{block}`` (the block as a duration) and every name of ``extract``: a regex searched in
    the reply whose first group (or whole match) fills that name, else ``fallbacks[name]``.
    ``url_from`` names the extracted value that becomes ``Diagnosis.url`` when found.
    """

    pattern: str
    classification: Classification
    summary: Text
    next_step: Text = attrs.field(factory=dict)
    reason: str = "undefined"
    stages: frozenset[Stage] = frozenset()
    codes: frozenset[int] = frozenset()
    hosts: tuple[str, ...] = ()
    block_seconds: int | None = None
    url: str | None = None
    pause_mailings: bool = False
    extract: Mapping[str, str] = attrs.field(factory=dict)
    fallbacks: Mapping[str, Text] = attrs.field(factory=dict)
    url_from: str | None = None
    _regex: re.Pattern[str] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern, re.IGNORECASE | re.DOTALL))

    def matches(self, error: SmtpError, host: str | None = None) -> bool:
        if self.stages and error.stage not in self.stages:
            return False
        if self.codes and error.code not in self.codes:
            return False
        if self.hosts and not (host and _under(host, self.hosts)):
            return False
        return bool(self._regex.search(f"{error.enhanced_status or ''} {error.reply}"))

    def diagnosis(self, server: Server, error: SmtpError, locale: str,
                  values: Mapping[str, str] | None = None,
                  block_seconds: int | None = None) -> Diagnosis:
        """The diagnosis, with ``values`` added to the texts and ``block_seconds`` (when
        given) replacing the rule's own block."""
        block = block_seconds if block_seconds is not None else self.block_seconds
        filled = {"server": server.name, "login": server.login or server.sender,
                  "reply": error.reply, "recipient": error.recipient or "",
                  "block": duration(block or 0, locale)}
        found: dict[str, str] = {}
        for name, regex in self.extract.items():
            match = re.search(regex, error.reply, re.IGNORECASE)
            if match:
                found[name] = match.group(1) if match.groups() else match.group(0)
            elif name in self.fallbacks:
                filled[name] = _pick(self.fallbacks[name], locale)
        filled.update(found)
        filled.update(values or {})
        return Diagnosis(
            classification=self.classification,
            summary=_pick(self.summary, locale, filled),
            next_step=_pick(self.next_step, locale, filled) if self.next_step else "",
            reason=self.reason, block_seconds=block,
            url=found.get(self.url_from, self.url) if self.url_from else self.url,
            pause_mailings=self.pause_mailings)


def _under(host: str, domains: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


def match_rules(rules: Iterable[ReplyRule], server: Server, error: SmtpError, locale: str, *,
                values: Mapping[str, str] | None = None,
                block_seconds: Mapping[Classification, int] | None = None) -> Diagnosis | None:
    """The diagnosis of the first rule matching ``error`` on ``server``, or ``None``.

    ``values`` adds placeholders; ``block_seconds`` overrides the block per classification
    (a provider's configurable rest after its rate-limit reply, say).
    """
    for rule in rules:
        if rule.matches(error, server.host):
            block = (block_seconds or {}).get(rule.classification)
            return rule.diagnosis(server, error, locale, values, block)
    return None


C = Classification
_GENERIC_RULES = (
    ReplyRule(r"TLS|certificate", C.SERVER, stages=frozenset({Stage.TLS}), reason="securityerror",
              summary={"en": "TLS with {server} failed: {reply}",
                       "ru": "Не удалось установить TLS с {server}: {reply}"},
              next_step={"en": "check host, port and security; for a private CA set ca_file "
                               "(tls_verify = false only if you accept the risk)",
                         "ru": "проверьте host, port и security; для частного УЦ укажите "
                               "ca_file (tls_verify = false — только осознанно)"}),
    ReplyRule(r"^5\.7\.8|authentication (failed|credentials)|invalid credentials|"
              r"password|credentials invalid", C.SERVER, stages=frozenset({Stage.AUTH}),
              reason="authfailure",
              summary={"en": "the server refused the login {login}: {reply}",
                       "ru": "сервер отклонил вход {login}: {reply}"},
              next_step={"en": "check the login and password (many providers need an app "
                               "password for SMTP)",
                         "ru": "проверьте логин и пароль (многие провайдеры требуют пароль "
                               "приложения для SMTP)"}),
    ReplyRule(r"quota|sending limit|limit exceeded|too many (messages|mails)|rate ?limit",
              C.QUOTA, codes=frozenset(
              {421, 450, 451, 452, 550, 554}), stages=frozenset({Stage.MAIL_FROM, Stage.DATA}),
              reason="exceedlimit", block_seconds=3600,
              summary={"en": "{server} says its sending limit is reached: {reply}",
                       "ru": "{server} сообщает, что лимит отправки исчерпан: {reply}"},
              next_step={"en": "mailfleet rests this server and uses the next one; lower its "
                               "limits in the config if this repeats",
                         "ru": "mailfleet делает паузу для этого сервера и использует "
                               "следующий; уменьшите лимиты в конфигурации"}),
)


_TLS_ON_PLAIN = re.compile(r"wrong[ _]version|record[ _]layer|unexpected[ _]eof|"
                          r"eof occurred|timed out|http[ _]request", re.IGNORECASE)


def security_hint(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    """A connection that fails in the way the other security mode explains: no greeting
    over plain text (the port speaks implicit TLS), or a TLS handshake answered in plain
    text (the port expects STARTTLS)."""
    if error.code is not None:
        return None
    values = {"server": server.name, "port": str(server.port), "reply": error.reply}
    if (error.stage is Stage.CONNECT and error.reply.startswith("no reply")
            and server.security is not Security.SSL):
        summary = {"en": "{server} sent no greeting on port {port}: {reply}",
                   "ru": "{server} не прислал приветствие на порту {port}: {reply}"}
        step = {"en": "the port may expect implicit TLS (465 usually does): set "
                      "security = \"ssl\"",
                "ru": "порт, возможно, ждёт TLS сразу (обычно 465): укажите "
                      "security = \"ssl\""}
        reason = "networkerror"
    elif (error.stage is Stage.TLS and server.security is Security.SSL
          and _TLS_ON_PLAIN.search(error.reply)):
        summary = {"en": "the TLS handshake with {server} on port {port} failed: {reply}",
                   "ru": "TLS с {server} на порту {port} не установлен: {reply}"}
        step = {"en": "the port may expect plain text first and STARTTLS (587 and 25 do): set "
                      "security = \"starttls\"",
                "ru": "порт, возможно, ждёт STARTTLS (587 и 25): укажите "
                      "security = \"starttls\""}
        reason = "securityerror"
    else:
        return None
    return Diagnosis(Classification.SERVER, _pick(summary, locale, values),
                     _pick(step, locale), reason)


def generic_diagnosis(server: Server, error: SmtpError, locale: str) -> Diagnosis:
    """The core's reading of any SMTP failure no provider recognised."""
    hint = security_hint(server, error, locale)
    if hint is not None:
        return hint
    found = match_rules(_GENERIC_RULES, server, error, locale)
    if found is not None:
        return found
    cls = error.classification
    stage = error.stage.value
    if error.stage is Stage.CONNECT and error.code is None:
        summary = {"en": "cannot reach {server}: {reply}", "ru": "нет связи с {server}: {reply}"}
        step = {"en": "check host and port, and that outbound connections to that port are "
                      "allowed", "ru": "проверьте host и port и что исходящие соединения на "
                                       "этот порт разрешены"}
        reason = "networkerror"
    elif error.stage is Stage.MAIL_FROM and cls is C.SERVER:
        summary = {"en": "{server} refused the sender: {reply}",
                   "ru": "{server} отклонил адрес отправителя: {reply}"}
        step = {"en": "use the server's own address or an alias it allows as the sender, or "
                      "set allow_sender_override = false",
                "ru": "отправляйте с адреса самого сервера или разрешённого псевдонима "
                      "(allow_sender_override = false)"}
        reason = "rejected"
    elif cls is C.PERMANENT:
        summary = {"en": "the letter was refused at {stage}: {reply}",
                   "ru": "письмо отклонено на этапе {stage}: {reply}"}
        step = {"en": "the recipient or letter will not be accepted; check the address",
                "ru": "получатель или письмо не будут приняты; проверьте адрес"}
        reason = "userunknown" if (error.enhanced_status or "").startswith("5.1.") else "rejected"
    elif cls is C.TRANSIENT:
        summary = {"en": "temporary failure at {stage}: {reply}",
                   "ru": "временная ошибка на этапе {stage}: {reply}"}
        step = {"en": "nothing to do: the letter will be retried later",
                "ru": "ничего делать не нужно: письмо будет отправлено позже"}
        reason = "systemerror"
    else:
        summary = {"en": "{server} cannot send now ({stage}): {reply}",
                   "ru": "{server} сейчас не может отправлять ({stage}): {reply}"}
        step = {"en": "check the server's settings; the next server is used meanwhile",
                "ru": "проверьте настройки сервера; пока используется следующий"}
        reason = "systemerror"
    values = {"server": server.name, "stage": stage, "reply": error.reply}
    return Diagnosis(cls, _pick(summary, locale, values), _pick(step, locale), reason)
