"""What the internal SMTP server is: this host's MTA on localhost:25, no AUTH, no TLS."""

from __future__ import annotations

import attrs

from mailfleet.plugin import Endpoint, ProviderInfo, Security


@attrs.frozen
class Options:
    """Internal SMTP server options (``[servers.options]``): ``sendmail`` pipes letters to
    that binary instead of SMTP; the three ``dkim_*`` options sign every letter."""

    sendmail: str | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_key_file: str | None = None


PROVIDER = ProviderInfo(
    id="internal_smtp",
    name="Internal SMTP (this host's mail server)",
    smtp=(Endpoint("localhost", 25, Security.NONE),),
    auth=(),
    sender_substitution=True,
    verp=True,
    timeout=30.0,
    kinds=("internal",),
    options=Options,
)
