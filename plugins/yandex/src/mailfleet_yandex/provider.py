"""What Yandex Mail is: domains, presets, login rule, auth, limits (all confirmed)."""

from __future__ import annotations

from mailfleet.plugin import Endpoint, Limits, ProviderInfo, Security

YANDEX_SENDER_RULE = ("Yandex refuses any sender but the mailbox and its aliases (553 5.7.1 not "
                      "owned by auth user)")

PROVIDER = ProviderInfo(
    id="yandex",
    name="Yandex Mail",
    # Yandex 360 custom domains are not listed: choose them with provider = "yandex".
    domains=("yandex.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua", "ya.ru",
             "narod.ru"),
    smtp=(Endpoint("smtp.yandex.ru", 465, Security.SSL),
          Endpoint("smtp.yandex.com", 465, Security.SSL)),
    imap=(Endpoint("imap.yandex.ru", 993, Security.SSL),
          Endpoint("imap.yandex.ru", 143, Security.STARTTLS)),
    pop3=(Endpoint("pop.yandex.ru", 995, Security.SSL),
          Endpoint("pop.yandex.ru", 110, Security.STARTTLS)),
    login="address",
    login_fallbacks=("localpart",),  # old @yandex.ru rule, unconfirmed: only if written
    auth=("app_password", "xoauth2"),
    # yandex.com/support/mail/web/letter/create/send-many-letters.html: 500 letters per
    # 24 h (each recipient counts), 35 recipients per letter from a mail client.
    limits=Limits(per_day=500, recipients_per_letter=35, window="rolling"),
    sender_substitution=False,
    sender_rule=YANDEX_SENDER_RULE,
    alias_help="list only the mailbox's own aliases in aliases = [...]",
    verp=False,
    foreign_sender="refused",
    sender_aliases=True,
    timeout=60.0,
    help_url="https://yandex.com/support/mail/web/letter/create/send-many-letters.html",
)
