"""The provider conformance suite of mailfleet-testing, run for every built-in provider."""

from __future__ import annotations

from typing import ClassVar

from mailfleet_testing.conformance import ProviderConformance, Replies

GMAIL_BAD_LOGIN = ("535 5.7.8 Username and Password not accepted. For more information, go to "
                   "5.7.8 https://support.google.com/mail/?p=BadCredentials")


class TestGmailConformance(ProviderConformance):
    provider_id = "gmail"
    mailbox = "shop.news@gmail.com"
    replies: ClassVar[Replies] = {"wrong_password": ("AUTH", GMAIL_BAD_LOGIN)}


class TestGoogleWorkspaceConformance(ProviderConformance):
    provider_id = "google-workspace"
    mailbox = "news@shop.example"


class TestYandexConformance(ProviderConformance):
    provider_id = "yandex"
    mailbox = "shop.news@yandex.ru"
    replies: ClassVar[Replies] = {
        "wrong_password": ("AUTH", "535 5.7.8 Error: authentication failed: Invalid user or "
                                   "password!")}


class TestMailruConformance(ProviderConformance):
    provider_id = "mailru"
    mailbox = "shop.news@mail.ru"


class TestRamblerConformance(ProviderConformance):
    provider_id = "rambler"
    mailbox = "shop.news@rambler.ru"
    # Rambler reads every 550 at MAIL FROM as a refused sender; its limit reply is its own.
    replies: ClassVar[Replies] = {"quota": ("MAIL", "451 4.7.1 Rate limit exceeded, try "
                                                    "again later")}


class TestInternalSmtpConformance(ProviderConformance):
    provider_id = "internal_smtp"
    mailbox = "news@shop.example"
