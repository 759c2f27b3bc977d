"""What the internal SMTP server is: this host's MTA on localhost:25, no AUTH, no TLS."""

from __future__ import annotations

from mailfleet.providers import Endpoint, ProviderInfo, Security

PROVIDER = ProviderInfo(
    id="internal-smtp",
    name="Internal SMTP (this host's mail server)",
    smtp=(Endpoint("localhost", 25, Security.NONE),),
    auth=(),
    sender_substitution=True,
    verp=True,
    timeout=30.0,
)
