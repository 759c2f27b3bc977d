"""mailfleet provider plugin for Mail.ru (VK)."""

from __future__ import annotations

from mailfleet import hookimpl
from mailfleet.providers import Endpoint, Limits, ProviderInfo, Security

PROVIDER = ProviderInfo(
    id="mailru",
    name="Mail.ru",
    domains=("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"),
    smtp=(Endpoint("smtp.mail.ru", 465, Security.SSL),
          Endpoint("smtp.mail.ru", 587, Security.STARTTLS)),
    imap=(Endpoint("imap.mail.ru", 993, Security.SSL),),
    pop3=(Endpoint("pop.mail.ru", 995, Security.SSL),),
    auth=("app_password",),
    limits=Limits(per_hour=50, per_day=300),
    sender_substitution=False,
    verp=False,
)


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER
