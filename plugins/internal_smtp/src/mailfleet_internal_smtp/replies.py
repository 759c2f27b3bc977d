"""What failures of the local MTA or the sendmail binary mean, and what to do."""

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

C = Classification

RULES = (
    ReplyRule(
        r"^sendmail .*(does not exist|not executable|not an absolute path)|cannot run",
        C.SERVER, stages=frozenset({Stage.CONNECT}), reason="mailererror",
        summary={"en": "the sendmail binary of {server} cannot be run: {reply}",
                 "ru": "не удаётся запустить sendmail сервера {server}: {reply}"},
        next_step={"en": "install the MTA or fix options.sendmail (e.g. \"/usr/sbin/sendmail\")",
                   "ru": "установите MTA или исправьте options.sendmail (например, "
                         "\"/usr/sbin/sendmail\")"}),
    ReplyRule(
        r"exited with status 75\b", C.TRANSIENT, reason="systemerror",
        summary={"en": "the local MTA deferred the letter: {reply}",
                 "ru": "локальный MTA отложил письмо: {reply}"},
        next_step={"en": "nothing to do: the letter is retried later",
                   "ru": "ничего делать не нужно: письмо будет отправлено позже"}),
    ReplyRule(
        r"exited with status (65|67|68)\b", C.PERMANENT, reason="rejected",
        summary={"en": "the local MTA refused the letter: {reply}",
                 "ru": "локальный MTA отклонил письмо: {reply}"},
        next_step={"en": "check the recipient addresses and the letter",
                   "ru": "проверьте адреса получателей и письмо"}),
    ReplyRule(
        r"exited with status \d+", C.SERVER, reason="mailererror",
        summary={"en": "the local MTA cannot send: {reply}",
                 "ru": "локальный MTA не может отправить письмо: {reply}"},
        next_step={"en": "check the MTA's log (e.g. /var/log/mail.log) and its configuration",
                   "ru": "проверьте журнал MTA (например, /var/log/mail.log) и его настройки"}),
    ReplyRule(
        r"^DKIM signing failed", C.SERVER, reason="securityerror",
        summary={"en": "{server} could not sign the letter with DKIM: {reply}",
                 "ru": "{server} не смог подписать письмо DKIM: {reply}"},
        next_step={"en": "check options.dkim_key_file (a readable PEM RSA key)",
                   "ru": "проверьте options.dkim_key_file (читаемый ключ RSA в PEM)"}),
)


def diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    """The reading of a sendmail/DKIM failure, or ``None`` (SMTP replies: the core's)."""
    return match_rules(RULES, server, error, locale)
