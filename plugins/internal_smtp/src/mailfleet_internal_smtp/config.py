"""Config rules of internal SMTP servers: SaaS is operator-only, sendmail and DKIM options."""

from __future__ import annotations

from mailfleet.plugin import Deployment, Server
from mailfleet_internal_smtp import signing
from mailfleet_internal_smtp.sendmail import unusable


def validate(server: Server, deployment: Deployment) -> list[str]:
    """Objections to an internal server's config, each with its fix."""
    where = f"servers[{server.name}]"
    problems = []
    if "sendmail" in server.options:
        path = server.options["sendmail"]
        if not isinstance(path, str) or not path:
            problems.append(f"{where}.options.sendmail: expected the path of a sendmail binary "
                            f"(e.g. \"/usr/sbin/sendmail\")")
        elif (why := unusable(path)) is not None:
            problems.append(f"{where}.options.sendmail: {why}; point it at the MTA's sendmail "
                            f"(e.g. \"/usr/sbin/sendmail\") or remove it to use SMTP")
    problems.extend(signing.problems(server))
    return problems
