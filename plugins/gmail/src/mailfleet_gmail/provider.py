"""What Gmail and Google Workspace are: domains, presets, login rule, auth, default limits."""

from __future__ import annotations

from mailfleet.plugin import Endpoint, Limits, ProviderInfo, Security

SMTP = (Endpoint("smtp.gmail.com", 465, Security.SSL),
        Endpoint("smtp.gmail.com", 587, Security.STARTTLS))
IMAP = (Endpoint("imap.gmail.com", 993, Security.SSL),)
POP3 = (Endpoint("pop.gmail.com", 995, Security.SSL),)

#: OAuth2 scope a token for SMTP XOAUTH2 must carry.
OAUTH_SCOPE = "https://mail.google.com/"

GMAIL_SENDER_RULE = ("Gmail rewrites a From that is not a verified \"Send mail as\" alias to "
                     "the account address (and sets the envelope sender itself)")
GMAIL_ALIAS_HELP = ("verify the address in Gmail (Settings > Accounts > Send mail as) and list "
                    "it in aliases = [...]")

GMAIL = ProviderInfo(
    id="gmail",
    name="Gmail",
    domains=("gmail.com", "googlemail.com"),
    smtp=SMTP, imap=IMAP, pop3=POP3,
    login="address",
    auth=("app_password", "xoauth2"),
    # Consumer caps are "reported" (Google's page 22839 is only quoted by third parties):
    # ~500 a day, 100 recipients per letter over SMTP, rolling 24 h.
    limits=Limits(per_day=500, recipients_per_letter=100, window="rolling"),
    sender_substitution=False,
    sender_rule=GMAIL_SENDER_RULE,
    alias_help=GMAIL_ALIAS_HELP,
    verp=False,
    foreign_sender="rewritten",
    # The seed's card: a server timeout over one minute, five recommended.
    timeout=300.0,
    help_url="https://support.google.com/mail/answer/7126229",
)

#: Google Workspace: custom domains, so chosen only by an explicit ``provider``.
WORKSPACE = ProviderInfo(
    id="google-workspace",
    name="Google Workspace",
    domains=(),
    smtp=SMTP, imap=IMAP, pop3=POP3,
    login="address",
    auth=("app_password", "xoauth2"),
    # Confirmed (support.google.com/a/answer/166852): 2,000 a day (500 during the trial),
    # 100 recipients per letter over SMTP, rolling 24 h.
    limits=Limits(per_day=2000, recipients_per_letter=100, window="rolling"),
    sender_substitution=False,
    sender_rule=GMAIL_SENDER_RULE,
    alias_help=GMAIL_ALIAS_HELP,
    verp=False,
    foreign_sender="rewritten",
    # The seed's card: a server timeout over one minute, five recommended.
    timeout=300.0,
    help_url="https://support.google.com/a/answer/166852",
)
