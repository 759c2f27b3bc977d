"""The hooks mailfleet calls, each a contract for plugin authors (reference: docs/hooks.md).

Plugins are found through the entry-point group ``mailfleet``; the entry-point name is the
plugin id (for a provider plugin, the provider id used in config). Implement hooks with
``mailfleet.plugin.hookimpl``, importing only from :mod:`mailfleet.plugin`. New-style wrappers
(``wrapper=True``) work on every hook; old-style ``hookwrapper`` is not supported.

Two kinds of hooks:

* **Provider hooks** are called for one server: on that server's provider plugin, on plugins
  that provide no provider (cross-cutting plugins: metrics, policy, headers), and last on the
  core's generic plugin, whose implementations are ``trylast`` fallbacks. A provider plugin
  never sees another provider's servers.
* **Global hooks** (``mailfleet_provider``, ``mailfleet_parse_bounce``, ``mailfleet_event``,
  ``mailfleet_mailbox_token``) are called on every plugin.

Three ways an answer is taken:

* ``firstresult``: the first implementation that returns something other than ``None`` wins;
  ``None`` means "not mine, ask the next plugin".
* **first awaited answer** (``mailfleet_oauth_token``, ``mailfleet_connect``, ``mailfleet_send``):
  an implementation may be ``def`` or ``async def``. mailfleet calls every implementation
  (nothing runs in a coroutine before it is awaited), then awaits the results in call order
  and takes the first that is not ``None``; the coroutines after it are closed unawaited. So
  declining is always possible: return ``None`` from a ``def``, or return ``None`` from an
  ``async def``. A ``def`` may also return an awaitable, or (``mailfleet_oauth_token``) a
  plain value.
* **collected**: every implementation runs; mailfleet uses all the answers.

Hook evolution: a new argument may be added to a spec at any time (implementations name only
the arguments they use, as pluggy allows); a hook or argument to be removed is first marked
with pluggy's ``warn_on_impl`` for at least one minor release, so an implementation of it gets
a ``DeprecationWarning`` naming the replacement when the plugin is registered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from mailfleet.bounces.report import BounceReport
    from mailfleet.config import Deployment
    from mailfleet.errors import Diagnosis, SmtpError
    from mailfleet.events import DeliveryEvent
    from mailfleet.mailbox.settings import MailboxSettings
    from mailfleet.plugins.providers import ProviderInfo
    from mailfleet.sending.envelope import Envelope, SendResult, SmtpSession
    from mailfleet.sending.outgoing import OutgoingLetter
    from mailfleet.sending.sender import SenderDecision, SenderRequest
    from mailfleet.sending.servers import Server

PROJECT = "mailfleet"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Hooks whose answer is the first awaited non-``None`` result (see the module docstring).
AWAITED = frozenset({"mailfleet_oauth_token", "mailfleet_connect", "mailfleet_send"})


@hookspec
def mailfleet_provider() -> ProviderInfo | None:
    """Declare the provider this plugin encodes: id, domains, hosts, presets, rules, options.

    Called once on each plugin when the plugin manager is built. Return ``None`` from a plugin
    that is not a provider (a metrics or policy plugin). ``ProviderInfo.id`` must equal the
    plugin's entry-point name; two plugins with one id are refused.

    Collected (called per plugin, so the manager knows which plugin declared what).
    """


@hookspec
def mailfleet_validate_server(
    server: Server, deployment: Deployment
) -> list[str] | None:
    """Check a resolved server's config against the provider's rules.

    :param server: the server, with presets applied and options checked against the
        provider's ``ProviderInfo.options`` schema.
    :param deployment: the deployment settings (``saas`` mode, locale).
    :return: a list of problems, each naming the key and the fix
        (``"servers[office].port: ..."``); an empty list or ``None`` means no objection.

    Collected: every objection from every plugin is reported together, at load time, before
    anything is sent.
    """


@hookspec
def mailfleet_oauth_token(server: Server) -> str | Awaitable[str | None] | None:
    """Supply a fresh OAuth2 access token for a server with ``auth = "xoauth2"``.

    :param server: the server about to connect, with ``auth = "xoauth2"``.
    :return: an access token valid now (a ``def`` returns it, an ``async def`` yields it);
        host applications implement this (they own the refresh tokens); it is called before
        each connection. ``None`` means "not mine". A server that needs a token and gets none
        fails at stage ``auth``.

    First awaited answer.
    """


@hookspec
def mailfleet_connect(
    server: Server, oauth_token: str | None
) -> Awaitable[SmtpSession | None] | None:
    """Open an authenticated session to ``server``.

    :param server: the resolved server (host, port, security, login, TLS options).
    :param oauth_token: for ``auth = "xoauth2"``, a fresh token from
        ``mailfleet_oauth_token``; ``None`` otherwise.
    :return: an awaitable (an ``async def``) yielding an open
        :class:`~mailfleet.sending.envelope.SmtpSession`; it raises
        :class:`~mailfleet.errors.SmtpError` with stage ``connect``, ``tls`` or ``auth`` on
        failure. Read the password with ``server.password()`` at this moment; never log it.
        ``None`` (returned, or yielded by the coroutine) means "use the next plugin" (in the
        end, the core's SMTP client).

    First awaited answer.
    """


@hookspec(firstresult=True)
def mailfleet_sender_policy(
    server: Server, wanted: SenderRequest
) -> SenderDecision | None:
    """Decide the From and envelope sender a letter will really use on ``server``.

    :param server: the server that will send the letter.
    :param wanted: the mailing's fixed sender and the envelope sender it asks for.
    :return: the decision and its reason (for example "the provider refuses any envelope
        sender but the login"). ``None`` defers to the next plugin; the core's rule: the wanted
        sender when ``server.allow_sender_override`` is true, else the server's own address.

    ``firstresult``.
    """


@hookspec
def mailfleet_prepare_letter(server: Server, letter: OutgoingLetter) -> None:
    """Change a letter before it leaves: add headers, rewrite the bytes.

    :param server: the server that will send the letter.
    :param letter: the letter; change it in place (``letter.add_header(name, value)``,
        ``letter.data = ...``). Raise :class:`~mailfleet.errors.SmtpError` (stage ``data``) to
        refuse sending it.
    :return: ignored (``None``).

    Collected: every implementation changes the same letter, in call order; signing
    (``mailfleet_sign_letter``) runs after all of them.
    """


@hookspec
def mailfleet_sign_letter(server: Server, letter: OutgoingLetter) -> None:
    """Sign the final bytes of a letter (DKIM, ARC) after every ``mailfleet_prepare_letter``.

    :param server: the server that will send the letter.
    :param letter: the letter; prepend the signature with ``letter.prepend(header)``. Raise
        :class:`~mailfleet.errors.SmtpError` (stage ``data``) when signing is impossible.
    :return: ignored (``None``).

    Collected: each signer adds its own signature header.
    """


@hookspec
def mailfleet_send(
    server: Server, session: SmtpSession, envelopes: Sequence[Envelope],
    stop: Callable[[SmtpError], bool] | None,
) -> Awaitable[list[SendResult] | None] | None:
    """Send a batch of letters over an open session (the transport, not the letter's content).

    :param server: the server the session belongs to.
    :param session: an open session from ``mailfleet_connect``.
    :param envelopes: the letters, in order, already prepared and signed.
    :param stop: the failures after which the batch must stop (the dispatcher passes "the
        provider says quota or server"); hand it on to ``session.send``.
    :return: an awaitable yielding one :class:`~mailfleet.sending.envelope.SendResult` per envelope,
        in order (for example: send one at a time and stop at the first refusal). ``None``
        means "send as is" (in the end the core calls ``session.send``).

    First awaited answer.
    """


@hookspec(firstresult=True)
def mailfleet_diagnose(
    server: Server, error: SmtpError, locale: str
) -> Diagnosis | None:
    """Classify and explain an SMTP failure for the user.

    :param server: the server that failed; its ``provider`` says whose replies these are.
    :param error: the failure: ``stage``, ``code``, ``enhanced_status`` and ``reply`` text.
    :param locale: ``en`` or ``ru``: the language of ``summary`` and ``next_step``.
    :return: a :class:`~mailfleet.errors.Diagnosis` whose classification decides what the
        dispatcher does (``quota`` blocks the server for ``block_seconds``; ``server`` moves
        on to the next server; ``pause_mailings`` stops every mailing on that server until a
        person acts). ``None``: "not a reply I know", ask the next plugin; the core's generic
        diagnosis answers every error.

    ``firstresult``.
    """


@hookspec(firstresult=True)
def mailfleet_mailbox_token(mailbox: MailboxSettings) -> str | None:
    """Supply a fresh OAuth2 access token for the bounce mailbox (``auth = "xoauth2"``).

    :param mailbox: the resolved IMAP/POP3 mailbox about to be read (host, login, protocol).
    :return: an access token for ``AUTHENTICATE XOAUTH2`` (IMAP) or ``AUTH XOAUTH2`` (POP3);
        ``None`` means "not mine". A mailbox that needs a token and gets none fails at stage
        ``auth``.

    ``firstresult``; called on every plugin.
    """


@hookspec(firstresult=True)
def mailfleet_parse_bounce(
    message: EmailMessage, raw: bytes
) -> BounceReport | None:
    """Parse a message from the bounce mailbox.

    :param message: the message parsed with ``email.policy.default``.
    :param raw: its bytes as received.
    :return: the report; ``None`` means "not a format I know". The core's parser (RFC 3464,
        RFC 3834, RFC 5965 and the Exim, qmail, Sendmail, Postfix text layouts) runs last
        and always answers, with kind ``not-bounce`` when nothing fits. Never raise: a
        malformed message must not stop the reader (exceptions are logged and skipped).

    ``firstresult``; called on every plugin, not only one provider's.
    """


@hookspec
def mailfleet_event(event: DeliveryEvent) -> None:
    """Observe a delivery event.

    :param event: what happened (sent, failed, deferred, skipped, quota exhausted, resumed,
        paused, bounced, complained), to which letter, recipient, server and mailing.
    :return: ignored (``None``). Called on every plugin; an observer's exception is logged
        and the other observers still run; nothing is propagated into sending.

    Collected.
    """
