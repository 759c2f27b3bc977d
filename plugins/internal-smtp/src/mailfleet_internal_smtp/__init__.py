"""mailfleet provider plugin for the mail server on the same host (internal SMTP)."""

from __future__ import annotations

from mailfleet import hookimpl
from mailfleet.providers import Endpoint, ProviderInfo, Security

PROVIDER = ProviderInfo(
    id="internal-smtp",
    name="Internal SMTP (this host's mail server)",
    smtp=(Endpoint("localhost", 25, Security.NONE),),
    auth=(),
    sender_substitution=True,
)


@hookimpl
def mailfleet_provider() -> ProviderInfo:
    return PROVIDER
