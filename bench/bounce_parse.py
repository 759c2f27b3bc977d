"""Bounce parse rate: mailfleet's production parse path vs flufl.bounce, same run, same files.

Parses every report of the public corpus (``tests/data/bounce-corpus/eml``) with
``Plugins.parse_bounce`` (what ``mailfleet bounces fetch`` calls: input budget, plugins' hooks,
core parser) and with flufl.bounce's ``scan_message`` (after ``email.message_from_bytes``, as
its documentation shows), in alternating rounds, and prints both rates (reports per CPU
second of this process, best round) and their ratio. flufl.bounce is installed from PyPI
into this interpreter's environment when it is missing. Not a test.

    .venv/bin/python bench/bounce_parse.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import email
import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounce-corpus" / "eml"


def _flufl() -> Callable[[bytes], Any]:
    if (importlib.util.find_spec("flufl") is None
            or importlib.util.find_spec("flufl.bounce") is None):
        print("installing flufl.bounce from PyPI ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "flufl.bounce"],
                       check=True)
    from flufl.bounce import scan_message

    def parse(raw: bytes) -> Any:
        try:
            return scan_message(email.message_from_bytes(raw))
        except Exception:  # its detectors raise on some malformed reports
            return set()
    return parse


def _round(parse: Callable[[bytes], Any], reports: list[bytes]) -> float:
    start = time.process_time()
    for raw in reports:
        parse(raw)
    return len(reports) / (time.process_time() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from mailfleet.plugins.manager import load_plugins

    reports = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    ours = load_plugins().parse_bounce
    theirs = _flufl()
    ours(reports[0])  # imports and compiled patterns, outside the measurement
    theirs(reports[0])
    rates: dict[str, list[float]] = {"mailfleet": [], "flufl.bounce": []}
    for _ in range(args.rounds):
        rates["mailfleet"].append(_round(ours, reports))
        rates["flufl.bounce"].append(_round(theirs, reports))
    best = {name: max(values) for name, values in rates.items()}
    print(f"{len(reports)} reports, {args.rounds} alternating rounds, reports per CPU second "
          f"(best round; all rounds in brackets)")
    for name, values in rates.items():
        print(f"  {name:<13} {best[name]:8.0f}/s  [{', '.join(f'{v:.0f}' for v in values)}]")
    print(f"  ratio mailfleet / flufl.bounce: {best['mailfleet'] / best['flufl.bounce']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
