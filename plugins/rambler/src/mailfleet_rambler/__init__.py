"""mailfleet provider plugin for Rambler Mail."""

from __future__ import annotations

from mailfleet import hookimpl
from mailfleet.providers import Endpoint, Limits, ProviderInfo, Security

PROVIDER = ProviderInfo(
    id="rambler",
    name="Rambler Mail",
    domains=("rambler.ru", "lenta.ru", "autorambler.ru", "myrambler.ru", "ro.ru", "r0.ru",
             "rambler.ua"),
    smtp=(Endpoint("smtp.rambler.ru", 465, Security.SSL),
          Endpoint("mail.rambler.ru", 465, Security.SSL)),
    imap=(Endpoint("imap.rambler.ru", 993, Security.SSL),),
    pop3=(Endpoint("pop.rambler.ru", 995, Security.SSL),),
    limits=Limits(per_hour=50, per_day=200),
    sender_substitution=False,
    verp=False,
)


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER
