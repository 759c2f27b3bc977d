"""The plugin manager: one factory that finds plugins, and a typed facade over its hooks.

``load_plugins()`` adds the hook specs, registers the core's generic plugin (its
implementations are ``trylast`` so providers override them), loads the entry-point group
``mailfleet``, skips ids listed in ``MAILFLEET_DISABLE_PLUGINS``, refuses duplicate provider
ids and calls ``check_pending()``. :class:`Plugins` calls provider hooks on the one provider
that owns a server (plus cross-cutting plugins and the generic fallback).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

import attrs
import pluggy

from mailfleet import generic, hookspecs
from mailfleet.bounces.report import BounceReport
from mailfleet.config import Deployment
from mailfleet.envelope import Envelope, SendResult, SmtpSession
from mailfleet.errors import Diagnosis, PluginError, SmtpError
from mailfleet.events import DeliveryEvent
from mailfleet.providers import ProviderInfo
from mailfleet.sender import SenderDecision, SenderRequest
from mailfleet.servers import GENERIC, Server

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mailfleet"
DISABLE_ENV = "MAILFLEET_DISABLE_PLUGINS"


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
    return Plugins(pm, origins)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class Plugins:
    """Typed calls to the hooks; provider hooks reach only the server's own provider."""

    def __init__(self, pm: pluggy.PluginManager, origins: dict[str, tuple[str, str]]) -> None:
        self.pm = pm
        self._origins = origins
        self.providers: dict[str, ProviderInfo] = {}
        for impl in pm.hook.mailfleet_provider.get_hookimpls():
            info = cast(ProviderInfo | None, impl.function())
            if info is None:
                continue
            if info.id != impl.plugin_name:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} declares provider id {info.id!r}; the id must "
                    f"equal the entry-point name"
                )
            self.providers[info.id] = info
        self._domains: dict[str, str] = {}
        for info in self.providers.values():
            for domain in info.domains:
                self._domains.setdefault(domain.lower(), info.id)
        self._callers: dict[tuple[str, str], Any] = {}

    # -- discovery --------------------------------------------------------------------
    def records(self) -> list[PluginRecord]:
        """Every registered plugin with its distribution, version and implemented hooks."""
        out = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
            dist, version = self._origins.get(name, ("?", "?"))
            out.append(PluginRecord(name, dist, version, hooks, self.providers.get(name)))
        return sorted(out, key=lambda r: (r.id != GENERIC, r.id))

    def provider_for(self, explicit: str | None, *addresses: str | None) -> str:
        """The provider id: ``explicit`` if given, else by an address's domain, else generic."""
        if explicit:
            if explicit not in self.providers and explicit != GENERIC:
                known = ", ".join(sorted(self.providers)) or "none installed"
                raise PluginError(
                    f"unknown provider {explicit!r}; installed providers: {known}"
                )
            return explicit
        for address in addresses:
            if address and "@" in address:
                domain = address.rpartition("@")[2].lower()
                if domain in self._domains:
                    return self._domains[domain]
        return GENERIC

    def info(self, provider: str) -> ProviderInfo | None:
        return self.providers.get(provider)

    # -- provider hooks ---------------------------------------------------------------
    def _caller(self, hook: str, provider: str) -> Any:
        key = (hook, provider)
        if key not in self._callers:
            others = [self.pm.get_plugin(p) for p in self.providers if p != provider]
            self._callers[key] = self.pm.subset_hook_caller(hook, remove_plugins=others)
        return self._callers[key]

    def validate_server(self, server: Server, deployment: Deployment) -> list[str]:
        results = self._caller("mailfleet_validate_server", server.provider)(
            server=server, deployment=deployment)
        return [problem for result in results if result for problem in result]

    def connect(self, server: Server) -> Awaitable[SmtpSession]:
        """Open a session; an XOAUTH2 server gets a fresh token from the token hook first."""
        token = self.oauth_token(server) if server.auth == "xoauth2" else None
        result = self._caller("mailfleet_connect", server.provider)(
            server=server, oauth_token=token)
        return cast(Awaitable[SmtpSession], result)

    def oauth_token(self, server: Server) -> str | None:
        token = self._caller("mailfleet_oauth_token", server.provider)(server=server)
        return cast(str | None, token)

    def sender_policy(self, server: Server, wanted: SenderRequest) -> SenderDecision:
        decision = self._caller("mailfleet_sender_policy", server.provider)(
            server=server, wanted=wanted)
        return cast(SenderDecision, decision)

    def send(self, server: Server, session: SmtpSession, envelopes: Sequence[Envelope],
             stop: Callable[[SmtpError], bool] | None = None) -> Awaitable[list[SendResult]]:
        result = self._caller("mailfleet_send", server.provider)(
            server=server, session=session, envelopes=envelopes, stop=stop)
        return cast(Awaitable[list[SendResult]], result)

    def diagnose(self, server: Server, error: SmtpError, locale: str = "en") -> SmtpError:
        """Attach the provider's diagnosis to ``error`` (which decides its classification)."""
        diagnosis = self._caller("mailfleet_diagnose", server.provider)(
            server=server, error=error, locale=locale)
        error.server = error.server or server.name
        return error.with_diagnosis(cast(Diagnosis | None, diagnosis))

    # -- global hooks -----------------------------------------------------------------
    def parse_bounce(self, raw: bytes, size: int | None = None) -> BounceReport:
        """Parse a bounce mailbox message through every plugin; never raises.

        The production path :func:`mailfleet.bounces.parse.parse_bounce` (input budget,
        then the plugins' parsers, then the core's); the hook is only called when a plugin
        other than the core implements it."""
        from mailfleet.bounces.parse import parse_bounce  # loaded only by bounce readers

        hook = self.pm.hook.mailfleet_parse_bounce
        others = any(impl.plugin_name != GENERIC for impl in hook.get_hookimpls())
        return parse_bounce(raw, hook if others else None, size=size)

    def emit(self, event: DeliveryEvent) -> None:
        """Tell every plugin about ``event``; a failing observer is logged, not raised."""
        for impl in reversed(self.pm.hook.mailfleet_event.get_hookimpls()):
            try:
                impl.function(event=event)
            except Exception:
                log.exception("plugin %s failed on event %s", impl.plugin_name, event.type)

