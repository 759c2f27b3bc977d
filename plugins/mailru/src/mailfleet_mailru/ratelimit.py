"""Mail.ru's rate-limit rest: ``451 Ratelimit exceeded`` blocks the server this long."""

from __future__ import annotations

from mailfleet.config import Deployment
from mailfleet.servers import Server
from mailfleet_mailru.provider import RATELIMIT_BLOCK_SECONDS


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
    value = server.options.get("ratelimit_block_seconds")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value <= 0):
        problems.append(f"{where}.options.ratelimit_block_seconds: expected a positive number "
                        f"of seconds (got {value!r}); the default is {RATELIMIT_BLOCK_SECONDS}")
    return problems
