"""The replies smtp.gmail.com sends, each with its classification and the user's next step.

Google's texts change wording ("Learn more at" became "For more information, go to") and end
in a random id before ``- gsmtp``: the patterns match the stable part only.
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

C = Classification
AUTH = frozenset({Stage.AUTH})
DAY = 24 * 3600

APP_PASSWORDS = "https://support.google.com/accounts/answer/185833"
BAD_CREDENTIALS = "https://support.google.com/mail/?p=BadCredentials"
WEB_LOGIN = "https://support.google.com/mail/answer/78754"
LOGIN_ATTEMPTS = "https://support.google.com/mail/answer/7126229"
SENDING_LIMITS = "https://support.google.com/a/answer/166852"
XOAUTH2_DOC = "https://developers.google.com/gmail/imap/xoauth2-protocol"

_APP_PASSWORD_STEP = {
    "en": "Gmail takes no account password over SMTP: turn on 2-Step Verification, create an "
          "app password (Google Account > Security > App passwords, " + APP_PASSWORDS + ") "
          "and put it in password_env or password_file; or use auth = \"xoauth2\"",
    "ru": "Gmail не принимает по SMTP обычный пароль аккаунта: включите двухэтапную "
          "аутентификацию, создайте пароль приложения (Аккаунт Google > Безопасность > "
          "Пароли приложений, " + APP_PASSWORDS + ") и укажите его в password_env или "
          "password_file; либо используйте auth = \"xoauth2\"",
}

#: Rules for servers with ``auth = "xoauth2"``: any AUTH refusal is about the token.
OAUTH_RULES = (
    ReplyRule(
        r".", C.SERVER, stages=AUTH, reason="authfailure", url=XOAUTH2_DOC,
        summary={"en": "Gmail refused the OAuth2 token for {login}: {reply}",
                 "ru": "Gmail отклонил OAuth2-токен для {login}: {reply}"},
        next_step={"en": "the token must be fresh, issued for {login} and carry the scope "
                         "https://mail.google.com/; check the host application's "
                         "mailfleet_oauth_token hook",
                   "ru": "токен должен быть свежим, выдан для {login} и иметь scope "
                         "https://mail.google.com/; проверьте хук mailfleet_oauth_token "
                         "в приложении"}),
)

RULES = (
    ReplyRule(
        r"application-specific password required|InvalidSecondFactor", C.SERVER,
        stages=AUTH, reason="authfailure", url=APP_PASSWORDS,
        summary={"en": "Gmail refused the password of {login}: 2-Step Verification is on, so "
                       "an app password is required",
                 "ru": "Gmail отклонил пароль {login}: включена двухэтапная аутентификация, "
                       "нужен пароль приложения"},
        next_step=_APP_PASSWORD_STEP),
    ReplyRule(
        r"username and password not accepted|BadCredentials", C.SERVER, stages=AUTH,
        reason="authfailure", url=BAD_CREDENTIALS,
        summary={"en": "Gmail did not accept the login {login} with this password",
                 "ru": "Gmail не принял логин {login} с этим паролем"},
        next_step={"en": "check that the login is the full address; " + _APP_PASSWORD_STEP["en"],
                   "ru": "проверьте, что логин — полный адрес; " + _APP_PASSWORD_STEP["ru"]}),
    ReplyRule(
        r"log ?in (via|through) your web browser|5\.7\.14", C.SERVER, stages=AUTH,
        reason="authfailure", url=WEB_LOGIN,
        summary={"en": "Google wants the owner of {login} to sign in with a web browser first "
                       "(a security check)",
                 "ru": "Google требует, чтобы владелец {login} сначала вошёл через браузер "
                       "(проверка безопасности)"},
        next_step={"en": "sign in at https://mail.google.com in a browser, confirm it is you, "
                         "then run `mailfleet servers check` again (" + WEB_LOGIN + ")",
                   "ru": "войдите в https://mail.google.com в браузере, подтвердите, что это вы, "
                         "и снова выполните `mailfleet servers check` (" + WEB_LOGIN + ")"}),
    ReplyRule(
        r"too many login attempts", C.SERVER, reason="toomanyconn", block_seconds=1800,
        url=LOGIN_ATTEMPTS,
        summary={"en": "Gmail blocks logins to {login} for a while: too many login attempts",
                 "ru": "Gmail временно блокирует вход в {login}: слишком много попыток входа"},
        next_step={"en": "mailfleet rests this server for 30 minutes; if it repeats, check the "
                         "password (failed logins cause it) and lower connections",
                   "ru": "mailfleet делает паузу для этого сервера на 30 минут; если "
                         "повторяется, проверьте пароль (неудачные входы вызывают блокировку) "
                         "и уменьшите connections"}),
    ReplyRule(
        r"authentication required", C.SERVER, codes=frozenset({530}), reason="authfailure",
        summary={"en": "Gmail wants AUTH before sending from {login}",
                 "ru": "Gmail требует авторизацию перед отправкой от {login}"},
        next_step={"en": "set an app password (password_env or password_file) or "
                         "auth = \"xoauth2\" for this server",
                   "ru": "укажите пароль приложения (password_env или password_file) или "
                         "auth = \"xoauth2\" для этого сервера"}),
    ReplyRule(
        r"daily (user sending|smtp relay( \(sending\))?) (limit|quota) exceeded", C.QUOTA,
        reason="exceedlimit", block_seconds=DAY, url=SENDING_LIMITS,
        summary={"en": "Gmail's daily sending limit of {login} is spent",
                 "ru": "дневной лимит отправки {login} в Gmail исчерпан"},
        next_step={"en": "Gmail blocks sending for up to 24 hours (a rolling window); mailfleet "
                         "stops this server for 24 h without retrying and uses the next one. "
                         "If it happened below limits.per_day, lower that limit",
                   "ru": "Gmail блокирует отправку на срок до 24 часов (скользящее окно); "
                         "mailfleet останавливает этот сервер на 24 ч без повторов и "
                         "использует следующий. Если это случилось раньше limits.per_day, "
                         "уменьшите этот лимит"}),
    ReplyRule(
        r"peak smtp relay limit exceeded", C.QUOTA, reason="exceedlimit", block_seconds=900,
        url=SENDING_LIMITS,
        summary={"en": "Google's SMTP relay peak limit is reached for {login}",
                 "ru": "достигнут пиковый лимит SMTP relay Google для {login}"},
        next_step={"en": "mailfleet rests this server for 15 minutes; lower limits.per_minute",
                   "ru": "mailfleet делает паузу для сервера на 15 минут; уменьшите "
                         "limits.per_minute"}),
    ReplyRule(
        r"too many recipients", C.TRANSIENT, codes=frozenset({452}), reason="exceedlimit",
        url="https://support.google.com/mail/?p=TooManyRecipientsError",
        summary={"en": "Gmail took no more recipients for this letter (at most 100 per letter "
                       "over SMTP)",
                 "ru": "Gmail не принял больше получателей для этого письма (не более 100 на "
                       "письмо по SMTP)"},
        next_step={"en": "the remaining recipients are retried in another letter; keep "
                         "limits.recipients_per_letter at 100 or less",
                   "ru": "остальные получатели будут отправлены другим письмом; держите "
                         "limits.recipients_per_letter не больше 100"}),
    ReplyRule(
        r"too many recipients", C.QUOTA, codes=frozenset({550}), reason="exceedlimit",
        block_seconds=3600, url=SENDING_LIMITS,
        summary={"en": "Gmail refuses more recipients from {login} (100 per letter, 10,000 "
                       "a day)",
                 "ru": "Gmail не принимает больше получателей от {login} (100 на письмо, "
                       "10 000 в день)"},
        next_step={"en": "mailfleet rests this server for an hour and puts the letter back; "
                         "keep limits.recipients_per_letter at 100 or less",
                   "ru": "mailfleet делает паузу для сервера на час и возвращает письмо в "
                         "очередь; держите limits.recipients_per_letter не больше 100"}),
    ReplyRule(
        r"same message-id", C.PERMANENT,
        reason="exceedlimit",
        summary={"en": "Gmail refuses more copies of this letter with the same Message-ID",
                 "ru": "Gmail не принимает новые копии письма с тем же Message-ID"},
        next_step={"en": "do not resend this letter with the same Message-ID (check custom "
                         "Message-ID headers in the mailing)",
                   "ru": "не отправляйте письмо повторно с тем же Message-ID (проверьте "
                         "собственные заголовки Message-ID в рассылке)"}),
    ReplyRule(
        r"\bgcdp\b", C.PERMANENT, reason="policyviolation",
        summary={"en": "a Google Workspace admin policy refused this letter: {reply}",
                 "ru": "политика администратора Google Workspace отклонила письмо: {reply}"},
        next_step={"en": "ask the Workspace administrator (Admin console > Gmail > "
                         "Compliance) which rule matched",
                   "ru": "спросите администратора Workspace (Консоль администратора > Gmail > "
                         "Соответствие требованиям), какое правило сработало"}),
)


def diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    """Gmail's reading of ``error``, or ``None`` for a reply Gmail's tables do not know."""
    if server.auth == "xoauth2":
        found = match_rules(OAUTH_RULES, server, error, locale)
        if found is not None:
            return found
    return match_rules(RULES, server, error, locale)
