"""mailfleet provider plugin for GMX (entry point ``gmx``): an example third-party plugin.

It imports only :mod:`mailfleet.plugin`, mailfleet's public plugin API.
"""

from __future__ import annotations

from mailfleet.plugin import Diagnosis, ProviderInfo, Server, SmtpError, hookimpl, match_rules
from mailfleet_gmx.provider import PROVIDER
from mailfleet_gmx.replies import RULES

__all__ = ["PROVIDER"]


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER


@hookimpl
def mailfleet_validate_server(server: Server) -> list[str] | None:
    if server.port == 25:
        return [f"servers[{server.name}].port: GMX takes mail from programs only on 587 "
                f"(security = \"starttls\") or 465 (security = \"ssl\"); remove port"]
    return None


@hookimpl
def mailfleet_diagnose(server: Server, error: SmtpError, locale: str) -> Diagnosis | None:
    return match_rules(RULES, server, error, locale)
