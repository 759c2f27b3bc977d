"""The replies smtp.mail.ru sends, each with its classification and the user's next step."""

from __future__ import annotations

from mailfleet.plugin import (
    REPLY_LINK,
    Classification,
    Diagnosis,
    ReplyRule,
    Server,
    SmtpError,
    Stage,
    match_rules,
)
from mailfleet_mailru.ratelimit import block_seconds

C = Classification
AUTH = frozenset({Stage.AUTH})

EXTERNAL_APPS_HELP = "https://help.mail.ru/mail/security/protection/external"
APP_PASSWORDS = "https://account.mail.ru/user/2-step-auth/passwords"
NOTSPAM = "https://help.mail.ru/notspam-support/errors/550spam"


_APP_PASSWORD_STEP = {
    "en": "Mail.ru takes only an application password over SMTP: in Mail.ru settings > Password "
          "and security, switch on “Access to Mail via IMAP, POP and SMTP”, then create a "
          "password for external applications (" + APP_PASSWORDS + ", help: "
          + EXTERNAL_APPS_HELP + ") and put it in password_env or password_file",
    "ru": "Mail.ru принимает по SMTP только пароль для внешнего приложения: в настройках "
          "Mail.ru > Пароль и безопасность включите «Доступ к почте по IMAP, POP и SMTP», "
          "затем создайте пароль для внешнего приложения (" + APP_PASSWORDS + ", справка: "
          + EXTERNAL_APPS_HELP + ") и укажите его в password_env или password_file",
}

RULES = (
    ReplyRule(
        r"NEOBHODIM parol prilozheniya|application password is required", C.SERVER,
        reason="authfailure", url=EXTERNAL_APPS_HELP,
        summary={"en": "Mail.ru refused the password of {login}: an application password is "
                       "required",
                 "ru": "Mail.ru отклонил пароль {login}: нужен пароль для внешнего "
                       "приложения"},
        next_step=_APP_PASSWORD_STEP),
    ReplyRule(
        r".", C.SERVER, stages=AUTH, codes=frozenset({534, 535}),
        reason="authfailure", url=EXTERNAL_APPS_HELP,
        summary={"en": "Mail.ru did not accept the login {login} with this password (it must "
                       "be an application password)",
                 "ru": "Mail.ru не принял логин {login} с этим паролем (нужен пароль для "
                       "внешнего приложения)"},
        next_step=_APP_PASSWORD_STEP),
    ReplyRule(
        r"not local sender", C.SERVER, stages=frozenset({Stage.MAIL_FROM}), reason="rejected",
        summary={"en": "Mail.ru refused the sender: the envelope sender must be the login "
                       "{login}",
                 "ru": "Mail.ru отклонил отправителя: адрес конверта должен совпадать с "
                       "логином {login}"},
        next_step={"en": "send from {login}; do not set allow_sender_override or a VERP/bounce "
                         "envelope sender for Mail.ru servers",
                   "ru": "отправляйте от {login}; не включайте allow_sender_override и "
                         "VERP/адрес для отказов для серверов Mail.ru"}),
    ReplyRule(
        r"ratelimit exceeded", C.QUOTA, reason="exceedlimit",
        block_seconds=3600,
        summary={"en": "Mail.ru's rate limit for {login} is reached",
                 "ru": "достигнут лимит скорости отправки Mail.ru для {login}"},
        next_step={"en": "mailfleet pauses this server for {block} and uses the next one (server "
                         "option ratelimit_block_seconds); lower limits.per_hour for it if "
                         "this repeats",
                   "ru": "mailfleet приостанавливает этот сервер на {block} и использует "
                         "следующий (опция сервера ratelimit_block_seconds); уменьшите "
                         "limits.per_hour, если это повторяется"}),
    ReplyRule(
        r"sending for this account is disabled", C.SERVER, reason="suspend",
        pause_mailings=True, url="https://e.mail.ru",
        summary={"en": "Mail.ru disabled sending for the account {login} (suspected break-in "
                       "or spam)",
                 "ru": "Mail.ru запретил отправку для {login} (подозрение на взлом или спам)"},
        next_step={"en": "sign in at https://e.mail.ru, change the password and confirm the "
                         "account as Mail.ru asks; create a new application password, then "
                         "resume the mailings paused on this server",
                   "ru": "войдите на https://e.mail.ru, смените пароль и подтвердите владение "
                         "ящиком, как просит Mail.ru; создайте новый пароль для внешнего "
                         "приложения и возобновите рассылки, остановленные на этом сервере"}),
    ReplyRule(
        r"spam message rejected", C.PERMANENT, reason="spamdetected", url=NOTSPAM,
        extract={"link": REPLY_LINK}, fallbacks={"link": {"en": NOTSPAM}}, url_from="link",
        summary={"en": "Mail.ru's spam filter rejected this letter",
                 "ru": "спам-фильтр Mail.ru отклонил это письмо"},
        next_step={"en": "if it is not spam, open {link} (the form carries the error code and "
                         "ID) or write to abuse@corp.mail.ru; register the domain at "
                         "https://postmaster.mail.ru",
                   "ru": "если это не спам, откройте {link} (в форме уже есть код ошибки и ID) "
                         "или напишите на abuse@corp.mail.ru; зарегистрируйте домен на "
                         "https://postmaster.mail.ru"}),
    ReplyRule(
        r"invalid mailbox|user not found|user is terminated", C.PERMANENT,
        reason="userunknown",
        summary={"en": "Mail.ru has no working mailbox {recipient}",
                 "ru": "в Mail.ru нет действующего ящика {recipient}"},
        next_step={"en": "remove the address from the list", "ru": "удалите адрес из списка"}),
)


def diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    """Mail.ru's reading of ``error``, or ``None`` for a reply its tables do not know;
    the rest after a rate limit comes from the server's ``ratelimit_block_seconds``."""
    return match_rules(RULES, server, error, locale,
                       block_seconds={C.QUOTA: block_seconds(server)})
