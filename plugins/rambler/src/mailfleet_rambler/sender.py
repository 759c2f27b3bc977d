"""Rambler's sender rule: From and envelope sender are the login (or a declared alias).

Rambler's exact rule and reply are unconfirmed; like Mail.ru, only the mailbox is used.
"""

from __future__ import annotations

from mailfleet.config import Deployment
from mailfleet.sender import SenderDecision, SenderRequest
from mailfleet.servers import Server


def mailbox(server: Server) -> str:
    """The login as an address (the sender when the login is not a full address)."""
    return server.login if server.login and "@" in server.login else server.sender


def sender_policy(server: Server, wanted: SenderRequest) -> SenderDecision:
    """From: the mailbox or a declared alias; envelope sender: the same address, no VERP."""
    own = {mailbox(server).lower(), server.sender.lower(), *(a.lower() for a in server.aliases)}
    name = wanted.from_name or server.sender_name
    if not wanted.from_addr:
        return SenderDecision(server.sender, name, server.sender, False,
                              "no sender given; using the Rambler mailbox address")
    if wanted.from_addr.lower() in own:
        dropped = bool(wanted.envelope_from) and wanted.envelope_from != wanted.from_addr
        reason = "the sender is the Rambler mailbox or a declared alias"
        if dropped:
            reason += "; Rambler wants the From as envelope sender, so VERP is not used"
        return SenderDecision(wanted.from_addr, name, wanted.from_addr, dropped, reason)
    return SenderDecision(
        server.sender, server.sender_name or wanted.from_name, server.sender, True,
        f"Rambler sends only from the login, so {wanted.from_addr} is replaced by "
        f"{server.sender}")


def validate(server: Server, deployment: Deployment) -> list[str]:
    """Objections to a Rambler server's config, each with its fix."""
    del deployment
    where = f"servers[{server.name}]"
    problems = []
    if server.allow_sender_override:
        problems.append(
            f"{where}.allow_sender_override: Rambler sends only from the login (the From must "
            f"match it); remove allow_sender_override")
    if server.auth != "password":
        problems.append(f"{where}.auth: Rambler takes only a password (no OAuth); remove auth "
                        f"and set password_env or password_file")
    if server.login is not None and "@" not in server.login:
        problems.append(f"{where}.login: Rambler's login is the full address "
                        f"(e.g. {server.sender}); remove login or write the full address")
    return problems
