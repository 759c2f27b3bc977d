"""What a failure means for the letter, the server and the mailing: one rule table.

Every function here is pure: it takes a failure already diagnosed by the fleet's send path
(its classification, block and pause verdict are final) and the facts of the attempt, and
returns a frozen decision. The dispatcher applies decisions (store writes, events, counters)
and decides nothing itself.

- A refused letter: ``permanent`` fails it; ``transient`` queues it again after the retry
  backoff, until ``max_attempts`` fail it; ``server`` and ``quota`` put it back untouched
  (attempts kept, uncharged) and stop the server.
- A letter the server never received (not attempted, no session): back in the queue,
  uncharged, attempts kept.
- A letter in doubt (its message went, no final reply): it keeps its charge and is held for
  review when the deployment or its mailing says so, else resent with the same Message-ID
  until ``max_attempts`` fail it.
- A stopped server: a provider quota blocks it (for the diagnosis' block, else until its
  limits reset); anything else rests it (the diagnosis' block, until a person unblocks it
  when the verdict needs one, else the circuit breaker's doubling rest). A verdict that
  needs a person pauses the mailings that were using the server; refusals (not broken
  connections) count towards pausing a mailing after ``max_server_failures`` in a row.
"""

from __future__ import annotations

from typing import Literal

import attrs

from mailfleet.errors import Classification, SmtpError
from mailfleet.events import EventType
from mailfleet.plugins.providers import Limits
from mailfleet.sending.quota import block_until_reset
from mailfleet.sending.retry import RetryPolicy
from mailfleet.store.base import LetterState

#: How long a server stays blocked after a reply that needs a person (a captcha, a disabled
#: account): until ``mailfleet servers unblock NAME``, in practice.
HELD_UNTIL_UNBLOCKED = 365 * 86_400.0


@attrs.frozen
class LetterDecision:
    """What happens to one letter after a failure.

    ``state``, ``text`` (the letter's last error), ``not_before``, ``attempts`` and
    ``charged`` are what the store records; ``event`` (with ``detail``) is the event to emit,
    if any; a deferral's detail gets its retry time from the dispatcher. ``deferred`` counts
    the letter as deferred in the run's report (``failed`` letters count as failed);
    ``stops_server``: the server must not be sent more letters now.
    """

    state: LetterState
    text: str | None
    attempts: int
    not_before: float | None = None
    charged: bool = False
    event: EventType | None = None
    detail: str = ""
    deferred: bool = False
    stops_server: bool = False


@attrs.frozen
class ServerDecision:
    """What happens to a server that stopped, and to the mailings that were using it.

    ``blocked_until`` is set for a provider quota (the server is blocked until then);
    otherwise the server is down and rests :meth:`rest_after` seconds (``rest``, or the
    circuit breaker's when ``rest`` is 0), coming back into the pass on its own only when
    ``revive``. ``note`` is the store's record of why. ``counts_for_mailings``: the failure
    counts towards pausing each mailing after consecutive server failures;
    ``pause_mailings``, when set, is why the mailings pause right now.
    """

    reason: str
    note: str
    blocked_until: float | None = None
    rest: float = 0.0
    broken: bool = False
    revive: bool = True
    counts_for_mailings: bool = False
    pause_mailings: str | None = None

    @property
    def status(self) -> Literal["blocked", "down"]:
        return "blocked" if self.blocked_until is not None else "down"

    def rest_after(self, failures: int, retry: RetryPolicy) -> float:
        """Seconds the server rests after its ``failures``-th consecutive failure."""
        return self.rest or retry.server_rest(failures, broken=self.broken)


def stops_server(error: SmtpError) -> bool:
    """Whether a letter's failure means the server must not be sent more letters now."""
    return error.classification in (Classification.QUOTA, Classification.SERVER)


def refused(error: SmtpError, attempts: int, retry: RetryPolicy, now: float
            ) -> LetterDecision:
    """A letter the server answered with a refusal; ``attempts`` it had before this one."""
    kind = error.classification
    text = str(error)
    if kind is Classification.PERMANENT:
        return LetterDecision("failed", text, attempts + 1, event=EventType.FAILED,
                              detail=text)
    if kind is Classification.TRANSIENT:
        attempts += 1
        if attempts >= retry.max_attempts:
            return LetterDecision("failed", text, attempts, event=EventType.FAILED,
                                  detail=f"gave up after {attempts} attempts: {text}")
        return LetterDecision("queued", text, attempts, now + retry.backoff(attempts),
                              event=EventType.DEFERRED, detail=text, deferred=True)
    # server or quota: the letter goes back untouched, the server stops
    return LetterDecision("queued", text, attempts, stops_server=True)


def not_attempted(error: SmtpError | None, attempts: int) -> LetterDecision:
    """A letter the server never received in a session: back in the queue, uncharged, its
    attempts kept (the next allowed server takes it)."""
    return LetterDecision("queued", f"not attempted: {error}" if error is not None else None,
                          attempts)


def not_connected(error: SmtpError, attempts: int) -> LetterDecision:
    """A letter of a batch no session could be opened for (connect, TLS, AUTH, a broken
    greeting): back in the queue, uncharged, its attempts kept."""
    return LetterDecision("queued", str(error), attempts)


def in_doubt(error: SmtpError | None, attempts: int, retry: RetryPolicy, *, hold: bool
             ) -> LetterDecision:
    """A letter whose message went without a final reply: it keeps its charge (the server
    had it) and is held for review (``hold``), or resent with the same Message-ID."""
    attempts += 1
    cause = str(error) if error is not None else "the session broke"
    if hold:
        return LetterDecision(
            "held", f"in doubt, held for review (it may have been delivered): {cause}",
            attempts, charged=True)
    if attempts >= retry.max_attempts:
        text = f"gave up after {attempts} attempts, the last one in doubt: {cause}"
        return LetterDecision("failed", text, attempts, charged=True, event=EventType.FAILED,
                              detail=text)
    return LetterDecision("queued", f"in doubt, resent with the same Message-ID: {cause}",
                          attempts, charged=True, deferred=True)


def connection_broken(error: SmtpError) -> bool:
    """Whether a failure to open a session is a broken connection (no usable reply, or the
    server closing with 421) rather than a refusal."""
    return error.code is None or error.code == 421


def server_stopped(error: SmtpError, server_name: str, limits: Limits, now: float, *,
                   broken: bool) -> ServerDecision:
    """What ``error`` (``broken``: the connection broke) means for the server it stopped."""
    diagnosis = error.diagnosis
    reason = diagnosis.summary if diagnosis else str(error)
    pause = None
    if diagnosis is not None and diagnosis.pause_mailings:
        # the verdict may be about the letters themselves (spam): the mailings that were
        # going through this server wait for a person instead of moving to other servers
        pause = f"server {server_name}: {reason}"
        if diagnosis.next_step:
            pause += f". Next step: {diagnosis.next_step}"
    if error.classification is Classification.QUOTA:
        until = (now + diagnosis.block_seconds if diagnosis and diagnosis.block_seconds
                 else block_until_reset(limits, now))
        return ServerDecision(reason, f"provider quota: {reason}", blocked_until=until,
                              broken=broken, pause_mailings=pause)
    if diagnosis and diagnosis.block_seconds:
        rest = float(diagnosis.block_seconds)
    elif pause is not None:
        rest = HELD_UNTIL_UNBLOCKED  # until a person acts and unblocks it
    else:
        rest = 0.0
    what = "connection broke" if broken else "server failure"
    return ServerDecision(reason, f"{what}: {reason}", rest=rest, broken=broken,
                          revive=pause is None, counts_for_mailings=not broken,
                          pause_mailings=pause)


def mailing_pause(failures: int, error: SmtpError, retry: RetryPolicy) -> str | None:
    """Why a mailing pauses after ``failures`` consecutive server failures (the last one
    ``error``), or ``None`` while it goes on."""
    if failures < retry.max_server_failures:
        return None
    return f"paused after {failures} consecutive server failures; last: {error}"
