"""Sending to Yandex one letter at a time, stopping at the first quota or server reply.

After the limit every further attempt extends Yandex's 24 h block, so a pipelined batch must
not push more letters after the first refusal: the rest are returned unsent with the same
reply, which the dispatcher reads as quota/server (letters put back, server stopped).
"""

from __future__ import annotations

from collections.abc import Sequence

from mailfleet.plugin import (
    Classification,
    Envelope,
    SendResult,
    Server,
    SmtpError,
    SmtpSession,
    Stage,
)
from mailfleet_yandex.replies import diagnose

_STOPS = (Classification.QUOTA, Classification.SERVER)


async def send_until_refused(server: Server, session: SmtpSession,
                             envelopes: Sequence[Envelope]) -> list[SendResult]:
    """One result per envelope; nothing is attempted after a quota or server refusal."""
    results: list[SendResult] = []
    for index, envelope in enumerate(envelopes):
        [result] = await session.send([envelope])
        results.append(result)
        error = result.error
        diagnosis = diagnose(server, error, "en") if error is not None else None
        if error is not None and diagnosis is not None and \
                diagnosis.classification in _STOPS:
            results += [SendResult(rest, SmtpError(
                Stage.MAIL_FROM, f"not attempted after: {error.reply}", code=error.code,
                enhanced_status=error.enhanced_status, server=server.name,
                classification=diagnosis.classification))
                for rest in envelopes[index + 1:]]
            break
    return results
