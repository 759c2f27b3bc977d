"""mailfleet provider plugin for Gmail and Google Workspace."""

from __future__ import annotations

from mailfleet import hookimpl
from mailfleet.providers import Endpoint, Limits, ProviderInfo, Security

PROVIDER = ProviderInfo(
    id="gmail",
    name="Gmail",
    domains=("gmail.com", "googlemail.com"),
    smtp=(Endpoint("smtp.gmail.com", 465, Security.SSL),
          Endpoint("smtp.gmail.com", 587, Security.STARTTLS)),
    imap=(Endpoint("imap.gmail.com", 993, Security.SSL),),
    pop3=(Endpoint("pop.gmail.com", 995, Security.SSL),),
    auth=("app_password", "xoauth2"),
    limits=Limits(per_day=500, recipients_per_letter=100),
    sender_substitution=False,
    verp=False,
)


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER
