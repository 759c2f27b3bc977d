"""The worker: a dispatcher that runs until it is stopped (``mailfleet worker``).

Any number of workers on any number of machines share one store; every quota holds exactly
across them (the store serialises each server's charge). A worker sends what can go, then
rests until the next quota window or retry is due, or until the store says there is new work
(PostgreSQL ``LISTEN``: letters queued, a mailing resumed, a server unblocked); without such
notifications (SQLite) it polls every ``poll_seconds``. While it rests it renews its lease and
takes back the letters of workers that are gone.

A store that cannot be reached (a dropped connection, a database restarting) does not end
the worker: the journal retries its commits for ``store_retry_seconds``; a pass that fails
anyway is followed by waits until the store answers, the worker's letters go back to the
queue and it carries on.

Stopping is in two steps: :meth:`Worker.stop` lets the batches in hand finish (no new claim),
releases the letters not yet sent and returns; if the batches are not done within ``grace``
seconds they are cancelled (a letter inside DATA is then in doubt, as after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mailfleet.clock import Clock
from mailfleet.errors import StoreUnavailable
from mailfleet.sending.dispatcher import Dispatcher, RunReport
from mailfleet.sending.fleet import Fleet
from mailfleet.store.base import Store, Wakeups

log = logging.getLogger(__name__)


class Worker:
    """Runs :class:`Dispatcher` passes until :meth:`stop`.

    :param concurrency: connections per server at once (default: each server's
        ``connections``).
    :param poll_seconds: the longest rest without a notification.
    :param grace: seconds the batches in hand get to finish after :meth:`stop`.
    """

    def __init__(self, fleet: Fleet, store: Store, *, clock: Clock | None = None,
                 concurrency: int | None = None, batch_size: int = 100,
                 poll_seconds: float = 5.0, grace: float = 30.0,
                 dispatcher_id: str | None = None) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.store = store
        self.clock = clock or store.clock()
        self.dispatcher = Dispatcher(fleet, store, clock=self.clock, batch_size=batch_size,
                                     connections=concurrency, dispatcher_id=dispatcher_id)
        self.poll_seconds = poll_seconds
        self.grace = grace
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._listening = False  # a notification wakes it (else it polls)
        self.report = RunReport()  # the sum of the passes
        self._last = RunReport()

    @property
    def id(self) -> str:
        return self.dispatcher.id

    def stop(self) -> None:
        """Finish the letters in hand, release the rest and return from :meth:`run`."""
        self._stopping.set()
        self._wake.set()
        self.dispatcher.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> RunReport:
        """Send until stopped; returns what was done. Cancelling it is safe (the letters it
        holds are released; one inside DATA is in doubt)."""
        listening = asyncio.ensure_future(self._listen(self.store.wakeups()))
        try:
            while not self.stopping:
                self._wake.clear()
                if not await self._pass():
                    break
                delay = self.poll_seconds
                report = self._last
                if report.waiting and report.resume_at is not None:
                    delay = report.resume_at - self.clock.now()
                    if delay <= 0 and report.sent == 0 and report.failed == 0:
                        delay = min(1.0, self.poll_seconds)  # something else holds them
                    if not self._listening:
                        delay = min(delay, self.poll_seconds)
                if delay > 0 and not self.stopping:
                    await self.dispatcher.rest(delay, self._wake)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            self.dispatcher.unregister()
        return self.report

    async def _pass(self) -> bool:
        """One dispatcher pass; after :meth:`stop`, ``grace`` seconds more at most."""
        task = asyncio.ensure_future(self.dispatcher.arun_once())
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                done, _ = await asyncio.wait([task], timeout=self.grace)
                if not done:
                    log.warning("the letters in hand did not finish within %.0f s; "
                                "cancelled", self.grace)
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    return False
            try:
                self._last = task.result()
            except StoreUnavailable as exc:
                await self._outage(exc)
                self._last = RunReport()
                return not self.stopping
            self.report = self.report + self._last
            return not self.stopping
        finally:
            stopped.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _outage(self, error: StoreUnavailable) -> None:
        """The store could not be reached, even after the journal's retries: wait (see
        :meth:`RetryPolicy.store_pauses`) until it answers again, then hand back every
        letter this worker still holds (a claim whose reply was lost is held too) and carry
        on. A stop ends the wait."""
        pauses = self.dispatcher.retry.store_pauses()
        while not self.stopping:
            pause = next(pauses)
            log.warning("the store cannot be reached (%s); the worker tries again in %.0f s",
                        error, pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            try:
                self.dispatcher.unregister()
            except StoreUnavailable as exc:
                error = exc
                continue
            log.warning("the store answers again; sending goes on")
            self._wake.set()  # the next pass at once: what woke the failed one is unknown
            return

    async def _listen(self, wakeups: Wakeups | None) -> None:
        """Wake the worker on each notification of new work (``wakeups``: the store's first
        listening connection; ``None``: the store has none, the worker polls). A connection
        that breaks is opened again (see :meth:`_listen_again`); meanwhile the worker
        polls."""
        while wakeups is not None:
            self._listening = True
            try:
                while True:
                    await wakeups.wait()
                    self._wake.set()
            except StoreUnavailable as exc:
                log.warning("wake-up notifications stopped (%s); polling until they are "
                            "back", exc)
            except Exception:
                log.exception("wake-up notifications stopped; polling until they are back")
            finally:
                self._listening = False
                wakeups.close()
            wakeups = await self._listen_again()

    async def _listen_again(self) -> Wakeups | None:
        """A new listening connection, tried after each of the retry policy's
        :meth:`~RetryPolicy.store_pauses` until the store gives one."""
        pauses = self.dispatcher.retry.store_pauses()
        while True:
            await asyncio.sleep(next(pauses))
            try:
                return self.store.wakeups()
            except StoreUnavailable as exc:
                log.warning("wake-up notifications: %s; trying again", exc)
