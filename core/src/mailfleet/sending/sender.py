"""Sender policy: which From and envelope sender a letter really uses on a server.

The one rule, applied to every server from its provider's data (:class:`ProviderInfo`):

* a server sends From its own ``sender``; a mailing's fixed sender is used only where the
  server has ``allow_sender_override = true`` (off by default everywhere) or the wanted
  address is the server's own or one of its declared ``aliases``;
* where the provider binds the From to the login (``sender_substitution = false``), the
  server's own address is the login's mailbox (plus declared aliases where
  ``sender_aliases``); a configured ``sender`` outside that set is refused at load
  (``foreign_sender = "refused"``) or replaced by the login with the reason stated
  (``foreign_sender = "rewritten"``, as the provider itself would do);
* the envelope sender is the From, the login where the provider insists
  (``envelope_sender = "login"``), and the VERP address only where the provider keeps it.

VERP: with ``[bounces] verp = true`` each letter asks for the envelope sender
``<bounce local part>+mf-<letter id>@<domain>``, so its bounce names the letter even when the
report quotes nothing of it; providers that refuse foreign envelope senders drop it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from mailfleet.addresses import normalize_address
from mailfleet.errors import AddressError
from mailfleet.sending.identity import verp_address

if TYPE_CHECKING:
    from mailfleet.sending.servers import Server


@attrs.frozen
class SenderRequest:
    """What the mailing wants: the From address and name, and an envelope sender
    (``None``: same as From; a VERP address when the mailing asks for one)."""

    from_addr: str
    from_name: str = ""
    envelope_from: str | None = None


@attrs.frozen
class SenderDecision:
    """What will really be used, and why (``substituted``: the request was overridden)."""

    from_addr: str
    from_name: str
    envelope_from: str
    substituted: bool
    reason: str


LETTER_ID = "{letter_id}"


def verp_template(address: str) -> str:
    """The VERP envelope sender for ``address``, with ``{letter_id}`` still to fill."""
    return verp_address(address, LETTER_ID)


def envelope_for(decided: str, letter_id: str) -> str:
    """The envelope sender of one letter: the VERP template filled in, or ``decided`` as is."""
    return decided.replace(LETTER_ID, letter_id) if LETTER_ID in decided else decided


def mailbox(server: Server) -> str | None:
    """The address the login sends as, where the provider binds the From to the login
    (``None``: the provider lets the server send from any address it is given)."""
    info = server.provider_info
    if info is None or info.sender_substitution or not server.login:
        return None
    login = server.login if "@" in server.login else f"{server.login}@{server.domain}"
    try:
        return normalize_address(login)
    except AddressError:
        return None


def _rule(server: Server) -> str:
    info = server.provider_info
    if info is not None and info.sender_rule:
        return info.sender_rule
    return (f"server {server.name!r} does not allow sender substitution "
            f"(allow_sender_override = false)")


def _own(server: Server) -> tuple[str, str]:
    """The server's own From and, when the provider rewrites the configured sender, why."""
    box = mailbox(server)
    if box is None or server.sender.lower() in _allowed(server, box):
        return server.sender, ""
    return box, f"{_rule(server)}, so the From is the login {box}, not {server.sender}"


def _allowed(server: Server, box: str) -> set[str]:
    info = server.provider_info
    aliases = server.aliases if info is None or info.sender_aliases else ()
    return {box.lower(), *(a.lower() for a in aliases)}


def sender_problems(server: Server) -> list[str]:
    """What is wrong with a server's sender settings under its provider's rule, each naming
    the key and the fix (checked when the config is loaded)."""
    where = f"servers[{server.name}]"
    info = server.provider_info
    problems: list[str] = []
    if info is not None and not info.sender_substitution and server.allow_sender_override:
        fix = f" and {info.alias_help}" if info.alias_help else ""
        problems.append(f"{where}.allow_sender_override: {_rule(server)}; remove "
                        f"allow_sender_override{fix}")
    box = mailbox(server)
    if info is None or box is None:
        return problems
    if server.aliases and not info.sender_aliases:
        problems.append(f"{where}.aliases: {_rule(server)}; remove aliases")
    if info.foreign_sender == "refused" and server.sender.lower() not in _allowed(server, box):
        alias = (f", or list {server.sender} in aliases = [...] if it is an alias of the "
                 f"mailbox" + (f" ({info.alias_help})" if info.alias_help else "")
                 if info.sender_aliases else "")
        problems.append(f"{where}.sender: {_rule(server)}; {server.sender} is not the login "
                        f"{box}; set sender = \"{box}\"{alias}")
    return problems


def decide(server: Server, wanted: SenderRequest) -> SenderDecision:
    """The From and envelope sender a letter really uses on ``server`` (see the module)."""
    info = server.provider_info
    own, rewritten = _own(server)
    box = mailbox(server)
    allowed = _allowed(server, box) if box is not None else {
        server.sender.lower(), *(a.lower() for a in server.aliases)}
    name = wanted.from_name or server.sender_name
    forced = ((box or server.login) if info and info.envelope_sender == "login"
              and server.login else None)
    if not wanted.from_addr:
        return SenderDecision(own, name, forced or own, bool(rewritten),
                              rewritten or "no sender given; using the server's own address")
    if wanted.from_addr.lower() not in allowed and not server.allow_sender_override:
        fix = f"; {info.alias_help}" if info and info.alias_help else ""
        return SenderDecision(
            own, server.sender_name or wanted.from_name, forced or own, True,
            f"{_rule(server)}, so {wanted.from_addr} is replaced by {own}{fix}")
    asked = wanted.envelope_from or wanted.from_addr
    envelope = forced or (asked if info is None or info.verp else wanted.from_addr)
    reason = ("the wanted sender is the server's own address or a declared alias"
              if wanted.from_addr.lower() in allowed
              else "the server allows sender substitution (allow_sender_override = true)")
    if envelope.lower() != asked.lower():
        reason += (f"; {_rule(server)}, so the requested envelope sender (VERP) {asked} is "
                   f"not used and the envelope sender is {envelope}")
    return SenderDecision(wanted.from_addr, name, envelope, envelope.lower() != asked.lower(),
                          reason)
