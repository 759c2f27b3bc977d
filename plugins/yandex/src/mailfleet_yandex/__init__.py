"""mailfleet provider plugin for Yandex Mail and Yandex 360."""

from __future__ import annotations

from mailfleet import hookimpl
from mailfleet.providers import Endpoint, Limits, ProviderInfo, Security

PROVIDER = ProviderInfo(
    id="yandex",
    name="Yandex Mail",
    domains=("yandex.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua", "ya.ru",
             "narod.ru"),
    smtp=(Endpoint("smtp.yandex.ru", 465, Security.SSL),),
    imap=(Endpoint("imap.yandex.ru", 993, Security.SSL),
          Endpoint("imap.yandex.ru", 143, Security.STARTTLS)),
    pop3=(Endpoint("pop.yandex.ru", 995, Security.SSL),
          Endpoint("pop.yandex.ru", 110, Security.STARTTLS)),
    auth=("app_password", "xoauth2"),
    limits=Limits(per_day=500, recipients_per_letter=35),
    sender_substitution=False,
    verp=False,
)


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER
