"""Yandex's sender rule: envelope and From are the login or a declared alias, never VERP.

smtp.yandex.ru refuses any other MAIL FROM (also ``<>`` and bounce/VERP addresses) with
``553 5.7.1 Sender address rejected: not owned by auth user.``
"""

from __future__ import annotations

from mailfleet.config import Deployment
from mailfleet.sender import SenderDecision, SenderRequest
from mailfleet.servers import Server


def sender_policy(server: Server, wanted: SenderRequest) -> SenderDecision:
    """The login (or a declared alias) as From and envelope sender."""
    own = {server.sender.lower(), *(a.lower() for a in server.aliases)}
    name = wanted.from_name or server.sender_name
    if not wanted.from_addr:
        return SenderDecision(server.sender, name, server.sender, False,
                              "no sender given; using the Yandex mailbox address")
    if wanted.from_addr.lower() in own:
        dropped = bool(wanted.envelope_from) and wanted.envelope_from != wanted.from_addr
        reason = "the sender is the Yandex mailbox or a declared alias"
        if dropped:
            reason += ("; Yandex refuses any envelope sender but the mailbox (553 5.7.1 not "
                       "owned by auth user), so the requested one (VERP) is not used")
        return SenderDecision(wanted.from_addr, name, wanted.from_addr, dropped, reason)
    return SenderDecision(
        server.sender, server.sender_name or wanted.from_name, server.sender, True,
        f"Yandex refuses any sender but the mailbox and its aliases (553 5.7.1 not owned by "
        f"auth user), so {wanted.from_addr} is replaced by {server.sender}; add the address to "
        f"servers[{server.name}].aliases only if it is an alias of this mailbox")


def validate(server: Server, deployment: Deployment) -> list[str]:
    """Objections to a Yandex server's config, each with its fix."""
    del deployment
    where = f"servers[{server.name}]"
    problems = []
    if server.allow_sender_override:
        problems.append(
            f"{where}.allow_sender_override: Yandex refuses any envelope sender but the "
            f"mailbox (553 5.7.1 not owned by auth user); remove allow_sender_override and list "
            f"the mailbox's own aliases in aliases = [...]")
    if server.auth == "none":
        problems.append(f"{where}.auth: Yandex requires AUTH; use an app password "
                        f"(password_env/password_file) or auth = \"xoauth2\"")
    return problems
