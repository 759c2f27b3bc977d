"""Score a bounce parser against a labelled corpus (rules of the corpus README).

Recipients: micro-averaged precision and recall over files whose ``kind`` is ``bounce``,
``verified`` is true and ``recipients`` is not null, each duplicate once; addresses compared
case-insensitively with quotes around the local part stripped. Kind, status class (4/5) and
reason: compared per file (a ``delay`` verdict counts as ``bounce``, since the labels file
delay warnings as bounces).

Run: ``python -m mailfleet.bounces.scoring EML_DIR TRUTH_JSON``.
"""

from __future__ import annotations

import email
import hashlib
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from mailfleet.bounces.report import BounceReport

RFC3464_TYPES = (b"message/delivery-status", b"message/global-delivery-status")


@attrs.define
class Tally:
    """Counters for one group of files."""

    files: int = 0
    true_pos: int = 0
    false_pos: int = 0
    false_neg: int = 0
    kind_ok: int = 0
    kind_n: int = 0
    status_ok: int = 0
    status_n: int = 0
    reason_ok: int = 0
    reason_n: int = 0
    hard_ok: int = 0
    hard_n: int = 0
    false_hard: int = 0
    live_n: int = 0

    @property
    def precision(self) -> float:
        """Recipient precision (1.0 when nothing was predicted)."""
        total = self.true_pos + self.false_pos
        return self.true_pos / total if total else 1.0

    @property
    def recall(self) -> float:
        """Recipient recall (1.0 when nothing was expected)."""
        total = self.true_pos + self.false_neg
        return self.true_pos / total if total else 1.0

    @property
    def kind(self) -> float:
        """Share of files with the right kind."""
        return self.kind_ok / self.kind_n if self.kind_n else 1.0

    @property
    def status(self) -> float:
        """Share of files with the right status class."""
        return self.status_ok / self.status_n if self.status_n else 1.0

    @property
    def reason(self) -> float:
        """Share of files with the right reason."""
        return self.reason_ok / self.reason_n if self.reason_n else 1.0

    @property
    def hard(self) -> float:
        """Share of labelled bounces whose hard/soft verdict agrees with the label."""
        return self.hard_ok / self.hard_n if self.hard_n else 1.0

    @property
    def false_hard_rate(self) -> float:
        """Share of bounces of a live address (labelled soft) that were called hard."""
        return self.false_hard / self.live_n if self.live_n else 0.0

    def line(self, name: str) -> str:
        """One printable line of figures."""
        return (f"{name:<44} files={self.files:<4} P={self.precision:6.1%} R={self.recall:6.1%} "
                f"kind={self.kind:6.1%} status={self.status:6.1%} reason={self.reason:6.1%} "
                f"hard={self.hard:6.1%} false-hard={self.false_hard_rate:5.1%}")


@attrs.define
class Scores:
    """Figures overall, for reports without an RFC 3464 part, and per MTA family."""

    overall: Tally = attrs.field(factory=Tally)
    non_rfc3464: Tally = attrs.field(factory=Tally)
    families: dict[str, Tally] = attrs.field(factory=lambda: defaultdict(Tally))
    misses: list[str] = attrs.field(factory=list)
    kept_in: Tally = attrs.field(factory=Tally)
    kept_aside: Tally = attrs.field(factory=Tally)
    aside_non_rfc3464: Tally = attrs.field(factory=Tally)

    def report(self) -> str:
        """A printable table."""
        lines = [self.overall.line("OVERALL"), self.non_rfc3464.line("without RFC 3464 part")]
        lines += [tally.line(name) for name, tally in sorted(self.families.items())]
        return "\n".join(lines)

    def split_report(self) -> str:
        """The generalisation table: whole corpus, the part rules were written on, and the
        part kept aside (never looked at while writing rules)."""
        return "\n".join([
            self.overall.line("whole corpus"),
            self.kept_in.line(f"kept in ({100 - ASIDE_PERCENT}% by name hash)"),
            self.kept_aside.line(f"kept aside ({ASIDE_PERCENT}%, rules never fitted)"),
            self.non_rfc3464.line("whole: without RFC 3464 part"),
            self.aside_non_rfc3464.line("aside: without RFC 3464 part"),
        ])


ASIDE_PERCENT = 30
"""Share of the corpus kept aside by :func:`kept_aside` (a fixed split by file name)."""


def kept_aside(name: str) -> bool:
    """True for the files held out of rule writing: a deterministic ~30% by name hash."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:2], "big") % 100 < ASIDE_PERCENT


def normalise(address: str) -> str:
    """Case-insensitive form with quotes around the local part stripped."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return f"{local.strip(chr(34))}@{domain}".lower()


def _has_rfc3464(raw: bytes) -> bool:
    low = raw.lower()
    return any(t in low for t in RFC3464_TYPES) and _mime_has_dsn(raw)


def _mime_has_dsn(raw: bytes) -> bool:
    try:
        msg = email.message_from_bytes(raw)
        return any(p.get_content_type() in {"message/delivery-status",
                                            "message/global-delivery-status"}
                   for p in msg.walk())
    except Exception:
        return False


def _score_file(entry: dict[str, Any], result: BounceReport, tallies: list[Tally],
                misses: list[str]) -> None:
    name = entry["file"]
    for tally in tallies:
        tally.files += 1
    got_kind = "bounce" if result.kind == "delay" else result.kind
    for tally in tallies:
        tally.kind_n += 1
        tally.kind_ok += got_kind == entry["kind"]
    if got_kind != entry["kind"]:
        misses.append(f"{name}: kind {result.kind} != {entry['kind']}")
    if entry["kind"] == "bounce" and entry["recipients"] is not None:
        want = {normalise(a) for a in entry["recipients"]}
        got = {normalise(r.address) for r in result.recipients}
        for tally in tallies:
            tally.true_pos += len(want & got)
            tally.false_pos += len(got - want)
            tally.false_neg += len(want - got)
        if want != got:
            misses.append(f"{name}: recipients {sorted(got)} != {sorted(want)}")
    first = result.recipients[0] if result.recipients else None
    if entry.get("status"):
        got_class = (first.status or first.reply_code or "")[:1] if first else ""
        ok = got_class == entry["status"][:1]
        for tally in tallies:
            tally.status_n += 1
            tally.status_ok += ok
        if not ok:
            misses.append(f"{name}: status {first.status if first else None} "
                          f"!= {entry['status']}")
    if entry["kind"] == "bounce" and entry.get("hardbounce") is not None:
        got_hard = bool(first and first.hard)
        for tally in tallies:
            tally.hard_n += 1
            tally.hard_ok += got_hard == entry["hardbounce"]
            if not entry["hardbounce"]:
                tally.live_n += 1
                tally.false_hard += got_hard
        if got_hard != entry["hardbounce"]:
            misses.append(f"{name}: hard {got_hard} != {entry['hardbounce']}")
    if entry.get("reason"):
        ok = bool(first) and first is not None and first.reason == entry["reason"]
        for tally in tallies:
            tally.reason_n += 1
            tally.reason_ok += ok
        if not ok:
            misses.append(f"{name}: reason {first.reason if first else None} "
                          f"!= {entry['reason']} "
                          f"[{(first.diagnostic or '')[:90] if first else ''}]")


def score(eml_dir: Path, truth: Path, parse: Callable[[bytes], BounceReport]) -> Scores:
    """Parse every labelled file of ``eml_dir`` with ``parse`` and compare with ``truth``."""
    scores = Scores()
    entries = json.loads(truth.read_text(encoding="utf-8"))
    for entry in entries:
        if entry.get("kind") == "unknown" or not entry.get("verified", False):
            continue
        if entry.get("duplicate_of"):
            continue
        path = eml_dir / entry["file"]
        if not path.exists():
            continue
        raw = path.read_bytes()
        result = parse(raw)
        aside = kept_aside(entry["file"])
        tallies = [scores.overall, scores.families[entry.get("family") or "?"],
                   scores.kept_aside if aside else scores.kept_in]
        if not _has_rfc3464(raw):
            tallies.append(scores.non_rfc3464)
            if aside:
                tallies.append(scores.aside_non_rfc3464)
        # misses of the kept-aside part are not listed: rules must not be fitted to them
        _score_file(entry, result, tallies, [] if aside else scores.misses)
    return scores


_FLAGS = ("-v", "--core-only", "--generalisation")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``EML_DIR TRUTH_JSON [-v] [--core-only] [--generalisation]``.

    Reports go through every installed plugin's parser, as ``mailfleet bounces fetch`` reads
    them; ``--core-only`` scores the core parser alone. ``--generalisation`` prints the
    figures for the whole corpus, the part kept in and the part kept aside (see
    :func:`kept_aside`); ``-v`` lists the misses, of the kept-in part only."""
    args = list(sys.argv[1:] if argv is None else argv)
    flags = {a for a in args if a in _FLAGS}
    args = [a for a in args if a not in _FLAGS]
    if len(args) != 2:
        print("usage: python -m mailfleet.bounces.scoring EML_DIR TRUTH_JSON [-v] [--core-only]"
              " [--generalisation]")
        return 2
    from mailfleet.bounces.parse import parse_bounce
    from mailfleet.plugins.manager import load_plugins

    parse = parse_bounce if "--core-only" in flags else load_plugins().parse_bounce
    scores = score(Path(args[0]), Path(args[1]), parse)
    print(scores.split_report() if "--generalisation" in flags else scores.report())
    if "-v" in flags:
        print("\n".join(scores.misses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
