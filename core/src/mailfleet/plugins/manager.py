"""The plugin manager: one factory that finds plugins, and a typed facade over its hooks.

``load_plugins()`` adds the hook specs, registers the core's generic plugin (its
implementations are ``trylast`` so providers override them), loads the entry-point group
``mailfleet``, skips ids listed in ``MAILFLEET_DISABLE_PLUGINS``, refuses duplicate provider
ids and calls ``check_pending()``. :class:`Plugins` is the only code that calls hooks: every
call goes through pluggy (provider hooks through a caller scoped to the server's provider),
so ``wrapper=True`` implementations wrap every hook. ``MAILFLEET_TRACE_PLUGINS=1`` prints each
implementation called, its plugin and its answer on stderr, secrets masked.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import attrs
import pluggy

from mailfleet import hookspecs
from mailfleet.bounces.report import BounceReport
from mailfleet.config import Deployment, structure_section
from mailfleet.errors import ConfigError, Diagnosis, PluginError, SmtpError, Stage
from mailfleet.events import DeliveryEvent
from mailfleet.plugins import generic
from mailfleet.plugins.providers import ProviderInfo
from mailfleet.secrets import Secret
from mailfleet.sending.envelope import Envelope, SendResult, SmtpSession
from mailfleet.sending.outgoing import OutgoingLetter
from mailfleet.sending.sender import SenderDecision, SenderRequest
from mailfleet.sending.servers import GENERIC, Server

if TYPE_CHECKING:
    from mailfleet.mailbox.settings import MailboxSettings

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mailfleet"
DISABLE_ENV = "MAILFLEET_DISABLE_PLUGINS"
TRACE_ENV = "MAILFLEET_TRACE_PLUGINS"

#: Arguments and answers never shown by the trace.
_SECRET_ARGS = frozenset({"oauth_token"})
_SECRET_ANSWERS = frozenset({"mailfleet_oauth_token", "mailfleet_mailbox_token"})


@attrs.frozen
class PluginRecord:
    """A loaded plugin: its id, where it came from, and what it implements."""

    id: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    provider: ProviderInfo | None


def disabled_ids(value: str | None = None) -> frozenset[str]:
    """The plugin ids named in ``MAILFLEET_DISABLE_PLUGINS`` (comma separated)."""
    raw = os.environ.get(DISABLE_ENV, "") if value is None else value
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def load_plugins(
    extra: Sequence[tuple[str, object]] = (), *, entry_points: bool = True
) -> Plugins:
    """Build the plugin manager: specs, the generic plugin, entry points, then ``extra``.

    ``extra`` registers (id, plugin) pairs directly: host applications use it to add their
    own hook implementations (an OAuth token provider, an event sink) without packaging.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(generic, name=GENERIC)
    blocked = disabled_ids()
    origins: dict[str, tuple[str, str]] = {GENERIC: ("mailfleet", _version("mailfleet"))}
    sources: list[tuple[str, object, tuple[str, str]]] = []
    if entry_points:
        for ep in _entry_points():
            if ep.name in blocked:
                log.info("plugin %s disabled by %s", ep.name, DISABLE_ENV)
                continue
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"plugin {ep.name!r} from {dist} failed to load: {exc}") from exc
            sources.append((ep.name, plugin, (dist, version)))
    sources.extend((name, plugin, ("<host>", "")) for name, plugin in extra
                   if name not in blocked)
    for name, plugin, origin in sources:
        if name in origins or pm.get_plugin(name) is not None:
            raise PluginError(
                f"two plugins claim the id {name!r} ({origins[name][0]} and {origin[0]}); "
                f"uninstall one or disable it with {DISABLE_ENV}={name}"
            )
        pm.register(plugin, name=name)
        origins[name] = origin
    pm.check_pending()
    _isolate_observers(pm)
    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        _trace(pm)
    return Plugins(pm, origins)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _plain_impls(pm: pluggy.PluginManager, hook: str) -> list[Any]:
    return [impl for impl in getattr(pm.hook, hook).get_hookimpls()
            if not impl.wrapper and not impl.hookwrapper]


def _isolate_observers(pm: pluggy.PluginManager) -> None:
    """Each ``mailfleet_event`` observer's exception is logged; the next observer still runs."""
    for impl in _plain_impls(pm, "mailfleet_event"):
        function, plugin = impl.function, impl.plugin_name

        def isolated(*args: Any, _function: Any = function, _plugin: str = plugin) -> None:
            try:
                _function(*args)
            except Exception:
                log.exception("plugin %s failed on a delivery event", _plugin)

        impl.function = isolated


def _mask(name: str, value: Any) -> str:
    if (name in _SECRET_ARGS and value is not None) or isinstance(value, Secret):
        return "***"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _trace(pm: pluggy.PluginManager) -> None:
    """Print every implementation call, its plugin and its answer on stderr, secrets masked."""
    def say(line: str) -> None:
        print(f"mailfleet-trace: {line}", file=sys.stderr, flush=True)

    for hook in pm.hook.__dict__:
        if not hook.startswith("mailfleet_"):
            continue
        for impl in _plain_impls(pm, hook):
            function, plugin, names = impl.function, impl.plugin_name, impl.argnames
            secret = hook in _SECRET_ANSWERS

            def shown(answer: Any, _secret: bool = secret) -> str:
                return "***" if _secret and answer is not None else _mask("", answer)

            def head(args: tuple[Any, ...], _hook: str = hook, _plugin: str = plugin,
                     _names: tuple[str, ...] = names) -> str:
                called = ", ".join(f"{n}={_mask(n, a)}" for n, a in zip(_names, args,
                                                                         strict=False))
                return f"{_hook}({called}) -> {_plugin}"

            if inspect.iscoroutinefunction(function):
                async def traced_async(*args: Any, _function: Any = function,
                                       _head: Any = head, _shown: Any = shown) -> Any:
                    answer = await _function(*args)
                    say(f"{_head(args)} answered {_shown(answer)}")
                    return answer
                impl.function = functools.wraps(function)(traced_async)
            else:
                def traced(*args: Any, _function: Any = function, _head: Any = head,
                           _shown: Any = shown) -> Any:
                    answer = _function(*args)
                    say(f"{_head(args)} answered {_shown(answer)}")
                    return answer
                impl.function = functools.wraps(function)(traced)


async def first_answer(results: Sequence[Any]) -> Any:
    """The rule of the awaited hooks: await in call order, the first non-``None`` wins.

    ``results`` holds what each implementation returned: ``None`` (declined), an awaitable
    (awaited; yielding ``None`` is a decline too) or a plain value. Coroutines after the
    answer are closed unawaited.
    """
    answer = None
    pending = list(results)
    try:
        while pending and answer is None:
            result = pending.pop(0)
            answer = await result if inspect.isawaitable(result) else result
    finally:
        for rest in pending:
            if inspect.iscoroutine(rest):
                rest.close()
    return answer


class Plugins:
    """Typed calls to the hooks; provider hooks reach only the server's own provider."""

    def __init__(self, pm: pluggy.PluginManager, origins: dict[str, tuple[str, str]]) -> None:
        self._pm = pm
        self._origins = origins
        self.providers: dict[str, ProviderInfo] = {}
        declaring = [impl.plugin_name for impl in _plain_impls(pm, "mailfleet_provider")]
        for name in declaring:
            others = [pm.get_plugin(p) for p in declaring if p != name]
            info = pm.subset_hook_caller("mailfleet_provider", remove_plugins=others)()
            found = [i for i in cast(list[ProviderInfo | None], info) if i is not None]
            if not found:
                continue
            if found[0].id != name:
                raise PluginError(
                    f"plugin {name!r} declares provider id {found[0].id!r}; the id must "
                    f"equal the entry-point name"
                )
            self.providers[name] = found[0]
        self._domains: dict[str, str] = {}
        self._hosts: dict[str, str] = {}
        for info in self.providers.values():
            for domain in info.domains:
                self._domains.setdefault(domain.lower(), info.id)
            for host in info.served_hosts() if info.domains else ():  # else explicit-only
                self._hosts.setdefault(host, info.id)
        self._callers: dict[tuple[str, str], Any] = {}

    # -- discovery --------------------------------------------------------------------
    def records(self) -> list[PluginRecord]:
        """Every registered plugin with its distribution, version and implemented hooks."""
        out = []
        for name, plugin in self._pm.list_name_plugin():
            hooks = tuple(sorted(c.name for c in self._pm.get_hookcallers(plugin) or ()))
            dist, version = self._origins.get(name, ("?", "?"))
            out.append(PluginRecord(name, dist, version, hooks, self.providers.get(name)))
        return sorted(out, key=lambda r: (r.id != GENERIC, r.id))

    def provider_for(self, explicit: str | None, *addresses: str | None,
                     host: str | None = None) -> str:
        """The provider id: ``explicit`` if given, else by the server's host, else by an
        address's domain, else generic."""
        if explicit:
            if explicit not in self.providers and explicit != GENERIC:
                known = ", ".join(sorted(self.providers)) or "none installed"
                raise PluginError(
                    f"unknown provider {explicit!r}; installed providers: {known}"
                )
            return explicit
        if host and host.lower().rstrip(".") in self._hosts:
            return self._hosts[host.lower().rstrip(".")]
        for address in addresses:
            if address and "@" in address:
                domain = address.rpartition("@")[2].lower()
                if domain in self._domains:
                    return self._domains[domain]
        return GENERIC

    def internal_provider(self) -> str:
        """The provider of ``kind = "internal"`` servers that name none: the one whose
        ``ProviderInfo.kinds`` has ``"internal"`` (``generic`` when none does)."""
        claiming = sorted(p for p, info in self.providers.items() if "internal" in info.kinds)
        return claiming[0] if claiming else GENERIC

    def info(self, provider: str) -> ProviderInfo | None:
        return self.providers.get(provider)

    def provider_options(self, provider: str, options: dict[str, Any]) -> Any:
        """``options`` as an instance of the provider's schema (``ProviderInfo.options``), or
        ``None`` when the provider has none or they are bad (``validate_server`` says why)."""
        try:
            return self._options(provider, options, "")
        except ConfigError:
            return None

    def _options(self, provider: str, options: dict[str, Any], where: str) -> Any:
        info = self.providers.get(provider)
        schema = info.options if info is not None else None
        if schema is None:
            if options:
                keys = ", ".join(sorted(options))
                raise ConfigError(f"{where}.options: provider {provider!r} takes no options "
                                  f"(got {keys}); remove them")
            return None
        return structure_section(options, schema, f"{where}.options")

    def has_event_observers(self) -> bool:
        """True when some plugin implements ``mailfleet_event`` (events are worth building)."""
        return bool(self._pm.hook.mailfleet_event.get_hookimpls())

    # -- provider hooks ---------------------------------------------------------------
    def _caller(self, hook: str, provider: str) -> Any:
        key = (hook, provider)
        if key not in self._callers:
            others = [self._pm.get_plugin(p) for p in self.providers if p != provider]
            self._callers[key] = self._pm.subset_hook_caller(hook, remove_plugins=others)
        return self._callers[key]

    def _has_impls(self, hook: str, provider: str) -> bool:
        return bool(self._caller(hook, provider).get_hookimpls())

    def validate_server(self, server: Server, deployment: Deployment) -> list[str]:
        """The options checked against the provider's schema, then every plugin's objections."""
        try:
            self._options(server.provider, server.options, f"servers[{server.name}]")
            problems = []
        except ConfigError as exc:
            problems = list(exc.problems)
        results = self._caller("mailfleet_validate_server", server.provider)(
            server=server, deployment=deployment)
        return problems + [problem for result in results if result for problem in result]

    async def connect(self, server: Server) -> SmtpSession:
        """Open a session; an XOAUTH2 server gets a fresh token from the token hook first."""
        token = await self.oauth_token(server) if server.auth == "xoauth2" else None
        results = self._caller("mailfleet_connect", server.provider)(
            server=server, oauth_token=token)
        session = await first_answer(results)
        if session is None:
            raise PluginError("no plugin opened a session (the generic plugin is disabled?)")
        return cast(SmtpSession, session)

    async def oauth_token(self, server: Server) -> str | None:
        results = self._caller("mailfleet_oauth_token", server.provider)(server=server)
        return cast(str | None, await first_answer(results))

    def sender_policy(self, server: Server, wanted: SenderRequest) -> SenderDecision:
        decision = self._caller("mailfleet_sender_policy", server.provider)(
            server=server, wanted=wanted)
        return cast(SenderDecision, decision)

    def prepare(self, server: Server, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Every letter through ``mailfleet_prepare_letter`` then ``mailfleet_sign_letter``."""
        prepare = self._caller("mailfleet_prepare_letter", server.provider)
        sign = self._caller("mailfleet_sign_letter", server.provider)
        if not prepare.get_hookimpls() and not sign.get_hookimpls():
            return list(envelopes)
        out = []
        for envelope in envelopes:
            letter = OutgoingLetter.from_envelope(envelope)
            try:
                prepare(server=server, letter=letter)
                sign(server=server, letter=letter)
            except SmtpError:
                raise
            except Exception as exc:  # a plugin's bug must not look like a letter fault
                raise SmtpError(Stage.DATA, f"a letter plugin failed: {exc}",
                                server=server.name) from exc
            out.append(letter.envelope())
        return out

    async def send(self, server: Server, session: SmtpSession, envelopes: Sequence[Envelope],
                   stop: Callable[[SmtpError], bool] | None = None) -> list[SendResult]:
        """Prepare and sign the letters, send them; results name the caller's envelopes."""
        prepared = self.prepare(server, envelopes)
        results = self._caller("mailfleet_send", server.provider)(
            server=server, session=session, envelopes=prepared, stop=stop)
        sent = cast(list[SendResult] | None, await first_answer(results))
        if sent is None:
            sent = await session.send(prepared, stop)
        if prepared == list(envelopes):
            return sent
        return [attrs.evolve(result, envelope=original)
                for result, original in zip(sent, envelopes, strict=True)]

    def diagnose(self, server: Server, error: SmtpError, locale: str = "en") -> SmtpError:
        """``error`` with the provider's diagnosis (which decides its classification)."""
        diagnosis = self._caller("mailfleet_diagnose", server.provider)(
            server=server, error=error, locale=locale)
        return error.with_diagnosis(cast(Diagnosis | None, diagnosis), server.name)

    # -- global hooks -----------------------------------------------------------------
    def mailbox_token(self, mailbox: MailboxSettings) -> str | None:
        """A fresh OAuth2 token for the bounce mailbox, or ``None`` when no plugin has one."""
        return cast(str | None, self._pm.hook.mailfleet_mailbox_token(mailbox=mailbox))

    def parse_bounce(self, raw: bytes, size: int | None = None) -> BounceReport:
        """Parse a bounce mailbox message through every plugin; never raises.

        The production path :func:`mailfleet.bounces.parse.parse_bounce` (input budget,
        then the plugins' parsers, then the core's); the hook is only called when a plugin
        other than the core implements it."""
        from mailfleet.bounces.parse import parse_bounce  # loaded only by bounce readers

        hook = self._pm.hook.mailfleet_parse_bounce
        others = any(impl.plugin_name != GENERIC for impl in hook.get_hookimpls())
        return parse_bounce(raw, hook if others else None, size=size)

    def emit(self, event: DeliveryEvent) -> None:
        """Tell every plugin about ``event``; a failing observer is logged, not raised."""
        try:
            self._pm.hook.mailfleet_event(event=event)
        except Exception:  # a wrapper's own failure
            log.exception("an event wrapper failed on event %s", event.type)
