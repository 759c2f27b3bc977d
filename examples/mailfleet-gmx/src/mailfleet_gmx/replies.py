"""GMX's replies to programs and what to do about each (en and ru)."""

from __future__ import annotations

from mailfleet.plugin import REPLY_LINK, Classification, ReplyRule, Stage
from mailfleet_gmx.provider import SETTINGS_HELP

C = Classification
POSTMASTER = "https://postmaster.gmx.net/en/error-messages"

RULES = (
    ReplyRule(
        r"authentication credentials invalid|authentication failed", C.SERVER,
        stages=frozenset({Stage.AUTH}), reason="authfailure", url=SETTINGS_HELP,
        summary={"en": "GMX refused the login {login}",
                 "ru": "GMX отклонил вход {login}"},
        next_step={"en": "GMX refuses programs until they are allowed: in GMX web mail open "
                         "Settings > POP3 & IMAP and allow access via POP3 and IMAP ("
                         + SETTINGS_HELP + "); then check that the login is the full address "
                         "and the password is right",
                   "ru": "GMX не пускает программы, пока это не разрешено: в веб-почте GMX "
                         "откройте Настройки > POP3 & IMAP и разрешите доступ по POP3 и IMAP ("
                         + SETTINGS_HELP + "); затем проверьте, что логин — полный адрес, а "
                         "пароль верный"}),
    ReplyRule(
        r"sender address (is )?not allowed|not allowed to send", C.SERVER,
        stages=frozenset({Stage.MAIL_FROM}), reason="rejected",
        summary={"en": "GMX refused the sender: only the mailbox {login} and its own "
                       "addresses may send",
                 "ru": "GMX отклонил отправителя: отправлять можно только от {login} и "
                       "адресов этого ящика"},
        next_step={"en": "send from the mailbox address or an address added to the mailbox "
                         "(aliases = [...]); do not set allow_sender_override",
                   "ru": "отправляйте с адреса ящика или адреса, добавленного в ящик "
                         "(aliases = [...]); не включайте allow_sender_override"}),
    ReplyRule(
        r"reject due to policy restrictions", C.PERMANENT, reason="policyviolation",
        url=POSTMASTER, extract={"link": REPLY_LINK}, fallbacks={"link": {"en": POSTMASTER}},
        url_from="link",
        summary={"en": "GMX's policy refused this letter: {reply}",
                 "ru": "политика GMX отклонила это письмо: {reply}"},
        next_step={"en": "open {link}: the code at its end says which rule matched",
                   "ru": "откройте {link}: код в конце ссылки говорит, какое правило "
                         "сработало"}),
    ReplyRule(
        r"too many (mails|messages)|limit exceeded", C.QUOTA, reason="exceedlimit",
        block_seconds=3600,
        summary={"en": "GMX's sending limit for {login} is reached",
                 "ru": "лимит отправки GMX для {login} исчерпан"},
        next_step={"en": "mailfleet rests this server for an hour; lower limits.per_hour if it "
                         "repeats",
                   "ru": "mailfleet делает паузу для сервера на час; уменьшите limits.per_hour, "
                         "если это повторяется"}),
)
