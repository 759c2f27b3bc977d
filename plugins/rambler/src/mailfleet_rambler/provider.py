"""What Rambler Mail is: domains, presets, login rule, default limits."""

from __future__ import annotations

from mailfleet.plugin import Endpoint, Limits, ProviderInfo, Security

RAMBLER_SENDER_RULE = "Rambler sends only from the login (the From must match it)"

PROVIDER = ProviderInfo(
    id="rambler",
    name="Rambler Mail",
    # ISPDB lists only rambler.ru; the others are from Delta Chat's and MailCore's databases.
    domains=("rambler.ru", "lenta.ru", "autorambler.ru", "myrambler.ru", "ro.ru", "r0.ru",
             "rambler.ua"),
    # smtp.rambler.ru:465 is the only port Delta Chat's CI found working (2024);
    # mail.rambler.ru is the pre-2022 host, accepted for old configs.
    smtp=(Endpoint("smtp.rambler.ru", 465, Security.SSL),
          Endpoint("mail.rambler.ru", 465, Security.SSL)),
    imap=(Endpoint("imap.rambler.ru", 993, Security.SSL),
          Endpoint("imap.rambler.ru", 143, Security.STARTTLS)),
    pop3=(Endpoint("pop.rambler.ru", 995, Security.SSL),),
    login="address",
    auth=("password",),
    # Rambler publishes no numbers: conservative defaults, override with [servers.limits].
    limits=Limits(per_hour=50, per_day=200, recipients_per_letter=30, window="rolling"),
    sender_substitution=False,
    sender_rule=RAMBLER_SENDER_RULE,
    verp=False,
    foreign_sender="refused",
    sender_aliases=False,  # the From must match the login itself
    timeout=60.0,
    help_url="https://help.rambler.ru/mail/mail-pochtovye-klienty/1275/",
)

#: Where the user switches on access for mail clients (IMAP/POP3/SMTP).
MAIL_APPS = "https://mail.rambler.ru/settings/mailapps"
ABUSE_ADDRESS = "abuse@rambler-co.ru"
ABUSE_FORM = "https://help.rambler.ru/feedback/mail/form/144"
