"""Mail.ru's rate-limit rest: ``451 Ratelimit exceeded`` blocks the server this long.

The server option ``ratelimit_block_seconds`` (a positive number of seconds) overrides the
default; its schema is :class:`Options`, checked by mailfleet at config load.
"""

from __future__ import annotations

import attrs

from mailfleet.plugin import Server

#: Default rest after ``451 Ratelimit exceeded`` (window unconfirmed); server option
#: ``ratelimit_block_seconds`` overrides it.
RATELIMIT_BLOCK_SECONDS = 3600


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    del instance
    if value <= 0:
        raise ValueError(f"{attribute.name}: expected a positive number of seconds (got "
                         f"{value}); the default is {RATELIMIT_BLOCK_SECONDS}")


@attrs.frozen
class Options:
    """Mail.ru server options (``[servers.options]``)."""

    ratelimit_block_seconds: int = attrs.field(default=RATELIMIT_BLOCK_SECONDS,
                                               validator=_positive)


def block_seconds(server: Server) -> int:
    """How long ``451 Ratelimit exceeded`` rests the server (option ``ratelimit_block_seconds``)."""
    options = server.provider_options
    return options.ratelimit_block_seconds if isinstance(options, Options) \
        else RATELIMIT_BLOCK_SECONDS
