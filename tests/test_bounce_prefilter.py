"""The phrase prefilter (``mailfleet.bounces.prefilter``) is a speed-up only: every phrase
pattern and rule set gives what the plain compiled pattern gives, on real report texts."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from mailfleet.bounces.prefilter import Phrases

CORPUS = sorted((Path(__file__).parent / "data" / "bounce-corpus" / "eml").glob("*.eml"))
MODULES = ("codes", "dsn", "parse", "prefilter", "reasons", "rhost", "signals", "text")


def _named(kind: type) -> dict[str, object]:
    found: dict[str, object] = {}
    for name in MODULES:
        module = importlib.import_module(f"mailfleet.bounces.{name}")
        for attr, value in vars(module).items():
            if isinstance(value, kind):
                found[f"{name}.{attr}"] = value
            elif isinstance(value, tuple):  # tables of (name, Phrases)
                for number, item in enumerate(value):
                    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], kind):
                        found[f"{name}.{attr}[{number}]"] = item[1]
    return found


PHRASES = _named(Phrases)
TEXTS = [path.read_bytes().decode("utf-8", "replace")[:8_000] for path in CORPUS] + [
    "İstanbul RCPT TO: <A@B.example> DATA 550 user unknown",  # lower() changes the length
    "MAILER-DAEMON Undeliverable: see https://x.example/a and mailto:a@b.example",
]


def test_the_bounce_modules_have_phrase_patterns() -> None:
    assert len(PHRASES) > 20


@pytest.mark.parametrize("name", sorted(PHRASES))
def test_phrases_give_what_the_plain_pattern_gives(name: str) -> None:
    phrases = PHRASES[name]
    assert isinstance(phrases, Phrases)
    plain = phrases.pattern
    for text in TEXTS:
        expected = plain.search(text)
        found = phrases.search(text)
        assert (found and found.span()) == (expected and expected.span()), text[:200]
        assert phrases.hit(text) == bool(expected)
        assert [m.span() for m in phrases.finditer(text)] == [
            m.span() for m in plain.finditer(text)]


def test_rule_sets_give_the_rules_that_match_in_order() -> None:
    from mailfleet.bounces import reasons

    for rules, table in ((reasons._STRONG_SET, reasons._TEXT_RULES),
                         (reasons._WEAK_SET, reasons._WEAK_RULES)):
        patterns = [re.compile(pattern) for _label, pattern in table]
        for text in TEXTS:
            low = text.lower()
            assert list(rules.matching(low)) == [
                n for n, p in enumerate(patterns) if p.search(low)], text[:200]
