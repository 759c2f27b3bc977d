"""What GMX is: domains, presets, login rule, sender rule (GMX help: "POP3/IMAP/SMTP")."""

from __future__ import annotations

from mailfleet.plugin import Endpoint, Limits, ProviderInfo, Security

SETTINGS_HELP = "https://hilfe.gmx.net/pop-imap/einschalten.html"

PROVIDER = ProviderInfo(
    id="gmx",
    name="GMX",
    domains=("gmx.net", "gmx.de", "gmx.at", "gmx.ch"),
    smtp=(Endpoint("mail.gmx.net", 587, Security.STARTTLS),
          Endpoint("mail.gmx.net", 465, Security.SSL)),
    imap=(Endpoint("imap.gmx.net", 993, Security.SSL),),
    pop3=(Endpoint("pop.gmx.net", 995, Security.SSL),),
    login="address",
    auth=("password",),
    # GMX publishes no figures for programs: conservative defaults, override per server.
    limits=Limits(per_hour=50, per_day=300, recipients_per_letter=25, window="rolling"),
    sender_substitution=False,
    sender_rule="GMX sends only from the mailbox's own addresses",
    alias_help="add the address to the GMX mailbox first and list it in aliases = [...]",
    help_url=SETTINGS_HELP,
)
