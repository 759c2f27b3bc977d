"""Gmail's sender rule: From is the account or a verified "Send mail as" alias.

Gmail does not refuse a foreign From: it silently rewrites it to the account address (and
keeps the original in ``X-Google-Original-From``). So mailfleet decides it up front and says
so, instead of letting Gmail change the letter behind the user's back.
"""

from __future__ import annotations

from mailfleet.config import Deployment
from mailfleet.sender import SenderDecision, SenderRequest
from mailfleet.servers import Server


def sender_policy(server: Server, wanted: SenderRequest) -> SenderDecision:
    """The From and envelope sender Gmail will really use; VERP is never used."""
    own = {server.sender.lower(), *(a.lower() for a in server.aliases)}
    name = wanted.from_name or server.sender_name
    if not wanted.from_addr:
        return SenderDecision(server.sender, name, server.sender, False,
                              "no sender given; using the Gmail account address")
    if wanted.from_addr.lower() in own:
        dropped = bool(wanted.envelope_from) and wanted.envelope_from != wanted.from_addr
        reason = "the sender is the Gmail account or a declared Send-mail-as alias"
        if dropped:
            reason += "; Gmail sets the envelope sender itself, so the requested envelope " \
                      "sender (VERP) is not used"
        return SenderDecision(wanted.from_addr, name, wanted.from_addr, dropped, reason)
    return SenderDecision(
        server.sender, server.sender_name or wanted.from_name, server.sender, True,
        f"Gmail rewrites a From that is not a verified \"Send mail as\" alias to the account "
        f"address, so {wanted.from_addr} is replaced by {server.sender}; verify the address "
        f"in Gmail (Settings > Accounts > Send mail as) and list it in "
        f"servers[{server.name}].aliases to send from it")


def validate(server: Server, deployment: Deployment) -> list[str]:
    """Objections to a Gmail/Workspace server's config, each with its fix."""
    del deployment
    where = f"servers[{server.name}]"
    problems = []
    if server.allow_sender_override:
        problems.append(
            f"{where}.allow_sender_override: Gmail does not send from foreign addresses (it "
            f"rewrites the From to the account address); remove allow_sender_override and "
            f"list the addresses verified in Gmail (Settings > Accounts > Send mail as) in "
            f"aliases = [...]")
    if server.auth == "none":
        problems.append(f"{where}.auth: Gmail requires AUTH; use an app password "
                        f"(password_env/password_file) or auth = \"xoauth2\"")
    if server.login is not None and "@" not in server.login:
        problems.append(f"{where}.login: Gmail's login is the full address "
                        f"(e.g. {server.sender}); remove login or write the full address")
    return problems
