"""Retry policies as data, turned into tenacity strategies (injectable sleep).

``RetryPolicy`` says how a transient failure of one letter is retried (attempts and backoff),
how a transient connection failure is retried, how long a failing server rests, and after how
many consecutive server failures a mailing pauses itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator

import attrs
import tenacity

from mailfleet.errors import Classification, SmtpError, StoreUnavailable

log = logging.getLogger(__name__)


@attrs.frozen
class RetryPolicy:
    """How failures are retried (the ``[retry]`` table of the config file).

    ``max_attempts``: transient failures of one letter before it fails for good;
    ``backoff_initial``/``backoff_multiplier``/``backoff_max``: seconds before the next attempt
    (exponential); ``connect_attempts``: tries to open a session on a transient failure;
    ``server_rest_seconds``: how long a server that refused the account (auth, refused
    sender) is left alone; ``breaker_seconds``: how long a server rests after its connection
    broke (dropped, timed out, 421, a broken reply); each consecutive failure doubles the rest
    (the circuit breaker, shared by every dispatcher through the store), up to
    ``server_rest_max``; ``max_server_failures``: consecutive server failures before a
    mailing pauses; ``store_retry_seconds``: how long a commit of letter facts is retried
    while the store cannot be reached (the sessions wait meanwhile), and after that how long
    a worker waits at most between tries of the store.
    """

    max_attempts: int = 5
    backoff_initial: float = 60.0
    backoff_multiplier: float = 2.0
    backoff_max: float = 3600.0
    connect_attempts: int = 3
    connect_backoff: float = 1.0
    server_rest_seconds: float = 300.0
    breaker_seconds: float = 30.0
    server_rest_max: float = 3600.0
    max_server_failures: int = 10
    store_retry_seconds: float = 15.0

    def server_rest(self, failures: int, *, broken: bool) -> float:
        """Seconds a server rests after its ``failures``-th consecutive failure."""
        base = self.breaker_seconds if broken else self.server_rest_seconds
        return float(min(self.server_rest_max, base * 2.0 ** max(0, failures - 1)))

    def letter_wait(self) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential(multiplier=self.backoff_initial,
                                         exp_base=self.backoff_multiplier,
                                         max=self.backoff_max)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failed attempt (1-based)."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = max(1, attempt)
        return float(self.letter_wait()(state))

    def connect_retrying(self, sleep: Callable[[float], Awaitable[None]]
                         ) -> tenacity.AsyncRetrying:
        """Retry a connection on transient SMTP errors only; re-raise the last error."""
        return tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.connect_attempts),
            wait=tenacity.wait_exponential(multiplier=self.connect_backoff, max=60),
            retry=tenacity.retry_if_exception(_is_transient),
            sleep=sleep,
            reraise=True,
        )

    def store_retrying(self, sleep: Callable[[float], Awaitable[None]], what: str
                       ) -> tenacity.AsyncRetrying:
        """Retry a store call while the store cannot be reached (:class:`StoreUnavailable`
        only), waiting 0.1 s, doubling up to 2 s, for about ``store_retry_seconds`` in all
        (counted in waits, so an injected clock's sleep counts too), with a warning naming
        ``what`` before each wait; re-raise the last error."""

        def warn(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            pause = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning("%s: %s; trying again in %.1f s", what, error, pause)

        waits, total = 0, 0.0
        while total < self.store_retry_seconds:
            total += min(2.0, 0.1 * 2 ** waits)
            waits += 1
        return tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(waits + 1),
            wait=tenacity.wait_exponential(multiplier=0.1, max=2),
            retry=tenacity.retry_if_exception_type(StoreUnavailable),
            sleep=sleep,
            before_sleep=warn,
            reraise=True,
        )


    def store_pauses(self) -> Iterator[float]:
        """Seconds between a worker's tries of a store that cannot be reached: 1 s,
        doubling up to ``store_retry_seconds`` (at least 1 s), for as long as it takes."""
        pause, limit = 1.0, max(1.0, self.store_retry_seconds)
        while True:
            yield pause
            pause = min(limit, pause * 2)


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, SmtpError) and exc.classification is Classification.TRANSIENT
