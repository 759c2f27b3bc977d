"""The hooks mailfleet calls, each a contract for plugin authors.

Plugins are found through the entry-point group ``mailfleet``; the entry-point name is the
provider id used in config (``provider = "gmail"``). Implement hooks with
``@mailfleet.hookimpl``; ``wrapper=True`` (new-style) wrappers are supported, old-style
``hookwrapper`` is not.

Two kinds of hooks:

* **Provider hooks** (``mailfleet_validate_server``, ``mailfleet_connect``,
  ``mailfleet_oauth_token``, ``mailfleet_sender_policy``, ``mailfleet_send``,
  ``mailfleet_diagnose``) are called for one server. mailfleet calls them on that server's
  provider plugin, on plugins that provide no provider (cross-cutting plugins: metrics,
  policy), and last on the core's generic plugin, which implements each of them with
  ``trylast=True`` as the fallback. A provider plugin never sees another provider's servers.
* **Global hooks** (``mailfleet_provider``, ``mailfleet_parse_bounce``, ``mailfleet_event``)
  are called on every plugin.

``firstresult`` hooks stop at the first implementation that returns something other than
``None``; returning ``None`` means "not mine, ask the next plugin".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from mailfleet.bounces.report import BounceReport
    from mailfleet.config import Deployment
    from mailfleet.envelope import Envelope, SendResult, SmtpSession
    from mailfleet.errors import Diagnosis, SmtpError
    from mailfleet.events import DeliveryEvent
    from mailfleet.providers import ProviderInfo
    from mailfleet.sender import SenderDecision, SenderRequest
    from mailfleet.servers import Server

PROJECT = "mailfleet"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mailfleet_provider() -> ProviderInfo | None:
    """Declare the provider this plugin encodes: id, domains, presets, login rule, limits.

    Called once on every plugin when the plugin manager is built. Return ``None`` from a
    plugin that is not a provider (a metrics or policy plugin). ``ProviderInfo.id`` must equal
    the plugin's entry-point name; two plugins with one id are refused.

    Not ``firstresult``: the manager collects every provider.
    """


@hookspec
def mailfleet_validate_server(
    server: Server, deployment: Deployment
) -> list[str] | None:
    """Check a resolved server's config against the provider's rules.

    :param server: the server, with presets already applied.
    :param deployment: the deployment settings (``saas`` mode, locale).
    :return: a list of problems, each naming the key and the fix
        (``"servers[office].port: ..."``); an empty list or ``None`` means no objection.

    Not ``firstresult``: every objection from every plugin is reported together, at load
    time, before anything is sent.
    """


@hookspec(firstresult=True)
def mailfleet_connect(
    server: Server, oauth_token: str | None
) -> Awaitable[SmtpSession] | None:
    """Open an authenticated session to ``server``.

    :param server: the resolved server (host, port, security, login, TLS options).
    :param oauth_token: for ``auth = "xoauth2"``, a fresh token from
        ``mailfleet_oauth_token``; ``None`` otherwise.

    :return: an awaitable (call an ``async def`` and return its coroutine) that yields an open
    :class:`~mailfleet.envelope.SmtpSession`; the awaitable raises
    :class:`~mailfleet.errors.SmtpError` with stage ``connect``, ``tls`` or ``auth`` on
    failure. Read the password with ``server.password()`` at this moment; never log it.

    ``firstresult``: the first plugin that returns an awaitable opens the session. ``None``
    means "use the next plugin" (in the end, the core's SMTP client).
    """


@hookspec(firstresult=True)
def mailfleet_oauth_token(server: Server) -> str | None:
    """Supply a fresh OAuth2 access token for a server with ``auth = "xoauth2"``.

    :param server: the server about to connect, with ``auth = "xoauth2"``.
    :return: an access token valid now; host applications implement this (they own the
        refresh tokens); it is called before each connection. ``firstresult``: the first token wins;
    ``None`` means "not mine". A server that needs a token and gets none fails at stage
    ``auth``.
    """


@hookspec(firstresult=True)
def mailfleet_sender_policy(
    server: Server, wanted: SenderRequest
) -> SenderDecision | None:
    """Decide the From and envelope sender a letter will really use on ``server``.

    :param server: the server that will send the letter.
    :param wanted: the mailing's fixed sender and the envelope sender it asks for.
    :return: the decision and its reason (for example "Yandex refuses any envelope sender but
        the login"). ``None`` defers to the next plugin; the core's rule is: the wanted sender
        when ``server.allow_sender_override`` is true, else the server's own address.

    ``firstresult``.
    """


@hookspec(firstresult=True)
def mailfleet_send(
    server: Server, session: SmtpSession, envelopes: Sequence[Envelope],
    stop: Callable[[SmtpError], bool] | None,
) -> Awaitable[list[SendResult]] | None:
    """Send a batch of letters over an open session.

    :param server: the server the session belongs to.
    :param session: an open session from ``mailfleet_connect``.
    :param envelopes: the letters, in order; each carries its envelope and bytes.
    :param stop: the failures after which the batch must stop (the dispatcher passes "the
        provider says quota or server"); hand it on to ``session.send``.
    :return: an awaitable yielding one :class:`~mailfleet.envelope.SendResult` per envelope,
        in order. A plugin may change the bytes (DKIM signing, provider headers) and then hand the
    batch to ``session.send``. ``firstresult``: ``None`` means "send as is" (the core calls
    ``session.send``).
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
    :return: ignored. Called on every plugin; an exception is logged, never propagated
        into sending. Not ``firstresult``.
    """

