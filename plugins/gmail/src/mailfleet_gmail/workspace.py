"""The ``google-workspace`` provider: Gmail's rules with Workspace limits (explicit only).

A separate plugin module (entry point ``google-workspace``) because a provider plugin is one
provider id; it reuses Gmail's hook implementations.
"""

from __future__ import annotations

from mailfleet.plugin import ProviderInfo, hookimpl
from mailfleet_gmail import mailfleet_diagnose
from mailfleet_gmail.provider import WORKSPACE

__all__ = ["mailfleet_diagnose", "mailfleet_provider"]

PROVIDER = WORKSPACE


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return WORKSPACE
