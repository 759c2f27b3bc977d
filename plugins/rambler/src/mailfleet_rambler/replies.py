"""The replies Rambler's servers send, each with its classification and the next step.

``Spam message rejected`` is rspamd's default text, sent by any rspamd host: it is read as
"Rambler blacklisted the sending IP" only when the server's host ends with ``rambler.ru``.
"""

from __future__ import annotations

from mailfleet.plugin import (
    Classification,
    Diagnosis,
    ReplyRule,
    Server,
    SmtpError,
    Stage,
    match_rules,
)
from mailfleet_rambler.provider import ABUSE_ADDRESS, ABUSE_FORM, MAIL_APPS

C = Classification

_IPV4 = (r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"
         r"(?![\d.])")

#: Only for servers whose host is ``*.rambler.ru``; ``{ip}`` is filled from the reply.
SPAM_BLOCK = ReplyRule(
    r"spam message rejected", C.SERVER, reason="blocked", pause_mailings=True,
    url=ABUSE_FORM, hosts=("rambler.ru",), extract={"ip": _IPV4},
    fallbacks={"ip": {"en": "(not given in the reply)", "ru": "(не указан в ответе)"}},
    summary={"en": "Rambler rejected the letter as spam: the sending IP address {ip} is on "
                   "Rambler's block list",
             "ru": "Рамблер отклонил письмо как спам: IP-адрес отправителя {ip} в "
                   "чёрном списке Рамблера"},
    next_step={"en": "write to " + ABUSE_ADDRESS + " (or the form " + ABUSE_FORM + ") naming "
                     "the IP {ip}, the account {login} and the steps you took (cause found and "
                     "removed, host checked, SPF/DKIM set up); resume the mailings paused on "
                     "this server after Rambler lifts the block",
               "ru": "напишите на " + ABUSE_ADDRESS + " (или через форму " + ABUSE_FORM + "), "
                     "указав IP {ip}, ящик {login} и принятые меры (причина найдена и "
                     "устранена, хост проверен, настроены SPF/DKIM); возобновите рассылки на "
                     "этом сервере после снятия блокировки"})

_ACCESS_STEP = {
    "en": "switch on access for mail clients at " + MAIL_APPS + " (Rambler may ask for a "
          "captcha), check the password, and that the login is the full address",
    "ru": "включите доступ для почтовых программ на " + MAIL_APPS + " (Рамблер может "
          "попросить капчу), проверьте пароль и что логин — полный адрес",
}

RULES = (
    ReplyRule(
        r".", C.SERVER, stages=frozenset({Stage.AUTH}), codes=frozenset({535, 534, 530}),
        reason="authfailure", url=MAIL_APPS,
        summary={"en": "Rambler refused the login {login}: {reply}",
                 "ru": "Рамблер отклонил вход {login}: {reply}"},
        next_step=_ACCESS_STEP),
    ReplyRule(
        r".", C.SERVER, stages=frozenset({Stage.MAIL_FROM}), codes=frozenset({550, 553, 554}),
        reason="rejected",
        summary={"en": "Rambler refused the sender: only the login {login} may send through it",
                 "ru": "Рамблер отклонил отправителя: отправлять можно только от {login}"},
        next_step={"en": "send from {login}; do not set allow_sender_override or a VERP/bounce "
                         "envelope sender for Rambler servers",
                   "ru": "отправляйте от {login}; не включайте allow_sender_override и "
                         "VERP/адрес для отказов для серверов Рамблера"}),
    ReplyRule(
        r"recipient address rejected: (inactive|blocked)", C.PERMANENT, reason="userunknown",
        summary={"en": "Rambler's mailbox {recipient} is inactive or blocked",
                 "ru": "ящик Рамблера {recipient} неактивен или заблокирован"},
        next_step={"en": "remove the address from the list", "ru": "удалите адрес из списка"}),
    ReplyRule(
        r"rate limit exceeded", C.QUOTA, reason="exceedlimit", block_seconds=3600,
        summary={"en": "Rambler's rate limit for {login} is reached",
                 "ru": "достигнут лимит скорости отправки Рамблера для {login}"},
        next_step={"en": "mailfleet rests this server for an hour; lower its limits.per_hour",
                   "ru": "mailfleet делает паузу для сервера на час; уменьшите его "
                         "limits.per_hour"}),
)


def diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    """Rambler's reading of ``error``, or ``None`` for a reply its tables do not know."""
    return match_rules((SPAM_BLOCK, *RULES), server, error, locale)
