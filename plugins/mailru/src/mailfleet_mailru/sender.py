"""Mail.ru's sender rule: the envelope sender is the login (``550 not local sender over smtp``).

The From is the login too, or an alias the user declares (alias sending is unconfirmed);
no VERP.
"""

from __future__ import annotations

from mailfleet.config import Deployment
from mailfleet.sender import SenderDecision, SenderRequest
from mailfleet.servers import Server

from mailfleet_mailru.provider import RATELIMIT_BLOCK_SECONDS


def mailbox(server: Server) -> str:
    """The address Mail.ru accepts as envelope sender: the login (full address)."""
    return server.login if server.login and "@" in server.login else server.sender


def sender_policy(server: Server, wanted: SenderRequest) -> SenderDecision:
    """From: the mailbox or a declared alias; envelope sender: always the mailbox."""
    box = mailbox(server)
    own = {box.lower(), server.sender.lower(), *(a.lower() for a in server.aliases)}
    name = wanted.from_name or server.sender_name
    if not wanted.from_addr:
        return SenderDecision(server.sender, name, box, False,
                              "no sender given; using the Mail.ru mailbox address")
    if wanted.from_addr.lower() in own:
        envelope = wanted.envelope_from or wanted.from_addr
        dropped = envelope.lower() != box.lower()
        reason = "the sender is the Mail.ru mailbox or a declared alias"
        if dropped:
            reason += (f"; Mail.ru takes no envelope sender but the login (550 not local "
                       f"sender over smtp), so {box} is used")
        return SenderDecision(wanted.from_addr, name, box, dropped, reason)
    return SenderDecision(
        server.sender, server.sender_name or wanted.from_name, box, True,
        f"Mail.ru refuses any sender but the login (550 not local sender over smtp), so "
        f"{wanted.from_addr} is replaced by {server.sender}")


def block_seconds(server: Server) -> int:
    """How long ``451 Ratelimit exceeded`` rests the server (option ``ratelimit_block_seconds``)."""
    value = server.options.get("ratelimit_block_seconds", RATELIMIT_BLOCK_SECONDS)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else RATELIMIT_BLOCK_SECONDS


def validate(server: Server, deployment: Deployment) -> list[str]:
    """Objections to a Mail.ru server's config, each with its fix."""
    del deployment
    where = f"servers[{server.name}]"
    problems = []
    if server.allow_sender_override:
        problems.append(
            f"{where}.allow_sender_override: Mail.ru refuses any envelope sender but the "
            f"login (550 not local sender over smtp); remove allow_sender_override")
    if server.auth != "password":
        problems.append(f"{where}.auth: Mail.ru SMTP takes only an application password; "
                        f"remove auth and set password_env or password_file")
    if server.login is not None and "@" not in server.login:
        problems.append(f"{where}.login: Mail.ru's login is the full address "
                        f"(e.g. {server.sender}); remove login or write the full address")
    value = server.options.get("ratelimit_block_seconds")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value <= 0):
        problems.append(f"{where}.options.ratelimit_block_seconds: expected a positive number "
                        f"of seconds (got {value!r}); the default is {RATELIMIT_BLOCK_SECONDS}")
    return problems
