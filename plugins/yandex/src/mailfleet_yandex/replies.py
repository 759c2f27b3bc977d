"""The replies smtp.yandex.ru sends, each with its classification and the user's next step."""

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

C = Classification
AUTH = frozenset({Stage.AUTH})
DAY = 24 * 3600

CLIENT_SETTINGS = "https://mail.yandex.ru/#setup/client"
APP_PASSWORDS = "https://yandex.com/support/passport/authorization/app-passwords.html"
LIMITS = "https://yandex.com/support/mail/web/letter/create/send-many-letters.html"
WEB_MAIL = "https://mail.yandex.ru"
HONEST_MAILERS = "https://yandex.com/support/mail/web/spam/honest-mailers.html"


_ACCESS_STEP = {
    "en": "in Yandex Mail open Settings > Email clients (" + CLIENT_SETTINGS + ") and allow "
          "access from mail clients; then create an app password of type Mail in Yandex ID "
          "(" + APP_PASSWORDS + ") and put it in password_env or password_file",
    "ru": "в Яндекс Почте откройте Настройки > Почтовые программы (" + CLIENT_SETTINGS + ") и "
          "разрешите доступ почтовым программам; затем создайте пароль приложения типа «Почта» "
          "в Яндекс ID (" + APP_PASSWORDS + ") и укажите его в password_env или password_file",
}

RULES = (
    ReplyRule(
        r"does not have access rights to this service", C.SERVER, stages=AUTH,
        reason="authfailure", url=CLIENT_SETTINGS,
        summary={"en": "Yandex refused {login}: access for mail clients is off or an app "
                       "password is needed",
                 "ru": "Яндекс отклонил {login}: доступ почтовым программам выключен или "
                       "нужен пароль приложения"},
        next_step=_ACCESS_STEP),
    ReplyRule(
        r"invalid user or password|invalid format", C.SERVER, stages=AUTH,
        reason="authfailure", url=APP_PASSWORDS,
        summary={"en": "Yandex did not accept the login {login} with this password",
                 "ru": "Яндекс не принял логин {login} с этим паролем"},
        next_step={"en": "use an app password, not the account password (" + APP_PASSWORDS
                         + "; app passwords are wiped when the account password or 2FA "
                         "changes); the login is the full address. Only if you are sure of "
                         "the password, a classic @yandex.ru mailbox may take the part before "
                         "@ as login = \"...\"",
                   "ru": "используйте пароль приложения, а не пароль аккаунта (" + APP_PASSWORDS
                         + "; пароли приложений сбрасываются при смене пароля или 2FA); логин "
                         "— полный адрес. Только если пароль точно верный, для старого ящика "
                         "@yandex.ru можно указать login = \"часть до @\""}),
    ReplyRule(
        r"sending without SSL/TLS encryption is not allowed", C.SERVER, reason="securityerror",
        summary={"en": "Yandex refuses to send over an unencrypted connection",
                 "ru": "Яндекс не отправляет письма без шифрования"},
        next_step={"en": "use security = \"ssl\" with port = 465 (the preset)",
                   "ru": "используйте security = \"ssl\" и port = 465 (по умолчанию)"}),
    ReplyRule(
        r"send AUTH command first", C.SERVER, reason="authfailure",
        summary={"en": "Yandex wants AUTH before sending from {login}",
                 "ru": "Яндекс требует авторизацию перед отправкой от {login}"},
        next_step={"en": "set a password (password_env or password_file) or auth = \"xoauth2\"",
                   "ru": "укажите пароль (password_env или password_file) или "
                         "auth = \"xoauth2\""}),
    ReplyRule(
        r"not owned by auth user|requires non-null sender", C.SERVER,
        stages=frozenset({Stage.MAIL_FROM}), reason="rejected",
        summary={"en": "Yandex refused the sender: only the mailbox {login} and its aliases may "
                       "send through it",
                 "ru": "Яндекс отклонил отправителя: через этот ящик можно отправлять только "
                       "от {login} и его псевдонимов"},
        next_step={"en": "send from the mailbox address or an alias listed in aliases; do not "
                         "set allow_sender_override or a VERP/bounce envelope sender for Yandex",
                   "ru": "отправляйте с адреса ящика или псевдонима из aliases; не включайте "
                         "allow_sender_override и VERP/адрес для отказов для Яндекса"}),
    ReplyRule(
        r"sending-limits|(sending|message|spam) limit exceeded|quota exceeded", C.QUOTA,
        reason="exceedlimit", block_seconds=DAY, url=LIMITS,
        summary={"en": "Yandex's sending limit for {login} is spent (500 letters or "
                       "recipients per 24 hours)",
                 "ru": "лимит отправки Яндекса для {login} исчерпан (500 писем или получателей "
                       "за 24 часа)"},
        next_step={"en": "do not try this server again for 24 hours: every attempt during the "
                         "block extends it by another 24 h. mailfleet stops it at once and "
                         "uses the next server",
                   "ru": "не отправляйте через этот сервер 24 часа: каждая попытка во время "
                         "блокировки продлевает её ещё на 24 ч. mailfleet сразу "
                         "останавливает сервер и использует следующий"}),
    ReplyRule(
        r"\[1\]\s*message rejected under suspicion of spam", C.PERMANENT,
        reason="spamdetected", url=HONEST_MAILERS,
        summary={"en": "Yandex's spam filter rejected this letter",
                 "ru": "спам-фильтр Яндекса отклонил это письмо"},
        next_step={"en": "check the letter against Yandex's rules for honest mailings ("
                         + HONEST_MAILERS + ")",
                   "ru": "проверьте письмо по требованиям Яндекса к честным рассылкам ("
                         + HONEST_MAILERS + ")"}),
    ReplyRule(
        r"message rejected under suspicion of spam", C.SERVER, reason="spamdetected",
        pause_mailings=True, url=WEB_MAIL, extract={"link": REPLY_LINK},
        fallbacks={"link": {"en": WEB_MAIL}}, url_from="link",
        summary={"en": "Yandex stopped sending from {login}: letters are suspected of spam",
                 "ru": "Яндекс остановил отправку с {login}: письма похожи на спам"},
        next_step={"en": "open {link} in a browser, signed in as {login}, and solve the "
                         "captcha; then resume the mailings paused on this server",
                   "ru": "откройте {link} в браузере под учётной записью {login} и "
                         "пройдите капчу; затем возобновите рассылки, остановленные на этом "
                         "сервере"}),
    ReplyRule(
        r"client host .*blocked|blocked by spam statistics", C.SERVER, reason="blocked",
        block_seconds=DAY,
        summary={"en": "Yandex blocked the sending host's IP address for 24 hours (spam "
                       "statistics)",
                 "ru": "Яндекс заблокировал IP-адрес отправляющего хоста на 24 часа (спам-"
                       "статистика)"},
        next_step={"en": "mailfleet rests this server for 24 hours; check the host for abuse "
                         "and the mailings against " + HONEST_MAILERS,
                   "ru": "mailfleet делает паузу для сервера на 24 часа; проверьте хост на "
                         "злоупотребления и рассылки по " + HONEST_MAILERS}),
    ReplyRule(
        r"too many recipients", C.TRANSIENT, codes=frozenset({452}), reason="exceedlimit",
        summary={"en": "Yandex took no more recipients for this letter (35 at most)",
                 "ru": "Яндекс не принял больше получателей для письма (не более 35)"},
        next_step={"en": "the remaining recipients are retried in another letter; keep "
                         "limits.recipients_per_letter at 35 or less",
                   "ru": "остальные получатели будут отправлены другим письмом; держите "
                         "limits.recipients_per_letter не больше 35"}),
    ReplyRule(
        r"too many connections", C.TRANSIENT, reason="toomanyconn",
        summary={"en": "Yandex refused another connection from this host",
                 "ru": "Яндекс отказал в ещё одном соединении с этого хоста"},
        next_step={"en": "lower connections for this server; the letter is retried later",
                   "ru": "уменьшите connections для сервера; письмо будет отправлено позже"}),
    ReplyRule(
        r"message size exceeds", C.PERMANENT, reason="mesgtoobig",
        summary={"en": "the letter is larger than Yandex accepts",
                 "ru": "письмо больше, чем принимает Яндекс"},
        next_step={"en": "make the letter smaller (attachments as links)",
                   "ru": "уменьшите письмо (вложения — ссылками)"}),
    ReplyRule(
        r"no such user", C.PERMANENT, stages=frozenset({Stage.RCPT_TO}), reason="userunknown",
        summary={"en": "Yandex has no mailbox {recipient}",
                 "ru": "в Яндексе нет ящика {recipient}"},
        next_step={"en": "remove the address from the list", "ru": "удалите адрес из списка"}),
)


def diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    """Yandex's reading of ``error``; ``{link}`` becomes the link from the reply."""
    return match_rules(RULES, server, error, locale)
