"""What Mail.ru is: domains, presets, login rule, auth, default limits."""

from __future__ import annotations

from mailfleet.plugin import Endpoint, Limits, ProviderInfo, Security
from mailfleet_mailru.ratelimit import RATELIMIT_BLOCK_SECONDS, Options

__all__ = ["PROVIDER", "RATELIMIT_BLOCK_SECONDS"]

MAILRU_SENDER_RULE = ("Mail.ru refuses any envelope sender but the login (550 not local sender "
                      "over smtp)")

PROVIDER = ProviderInfo(
    id="mailru",
    name="Mail.ru",
    domains=("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"),
    smtp=(Endpoint("smtp.mail.ru", 465, Security.SSL),
          Endpoint("smtp.mail.ru", 587, Security.STARTTLS)),
    imap=(Endpoint("imap.mail.ru", 993, Security.SSL),
          Endpoint("imap.mail.ru", 143, Security.STARTTLS)),
    pop3=(Endpoint("pop.mail.ru", 995, Security.SSL),
          Endpoint("pop.mail.ru", 110, Security.STARTTLS)),
    login="address",
    auth=("app_password",),
    # Mail.ru publishes no numbers: conservative defaults, override with [servers.limits].
    limits=Limits(per_hour=50, per_day=300, recipients_per_letter=30, window="rolling"),
    sender_substitution=False,
    sender_rule=MAILRU_SENDER_RULE,
    envelope_sender="login",
    verp=False,
    foreign_sender="refused",
    sender_aliases=True,
    timeout=60.0,
    help_url="https://help.mail.ru/mail/security/protection/external",
    options=Options,
)
