"""Bounce parsing scored on the real-bounce corpus (targets from the project brief), through
every installed plugin as `mailfleet bounces fetch` reads reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailfleet.bounces.scoring import Scores, score
from mailfleet.plugins.manager import load_plugins

CORPUS = Path(__file__).parent / "data" / "bounce-corpus"


@pytest.fixture(scope="module")
def scores() -> Scores:
    return score(CORPUS / "eml", CORPUS / "truth.json", load_plugins().parse_bounce)


def test_corpus_and_licences_are_present() -> None:
    assert len(list((CORPUS / "eml").glob("*.eml"))) >= 380
    assert (CORPUS / "LICENSE-sisimai-set-of-emails.txt").exists()
    assert (CORPUS / "LICENSE-flufl-bounce.txt").exists()


def test_recipient_precision_is_at_least_98_percent(scores: Scores) -> None:
    value = scores.overall.precision
    assert value >= 0.98, f"recipient precision {value:.1%} < 98%"


def test_recipient_recall_is_at_least_95_percent(scores: Scores) -> None:
    value = scores.overall.recall
    assert value >= 0.95, f"recipient recall {value:.1%} < 95%"


def test_recipient_recall_without_rfc3464_part_is_at_least_90_percent(scores: Scores) -> None:
    value = scores.non_rfc3464.recall
    assert value >= 0.90, f"recall without an RFC 3464 part {value:.1%} < 90%"


def test_status_class_is_right_for_at_least_97_percent(scores: Scores) -> None:
    value = scores.overall.status
    assert value >= 0.97, f"status class right {value:.1%} < 97%"


def test_kind_is_right_for_at_least_97_percent(scores: Scores) -> None:
    value = scores.overall.kind
    assert value >= 0.97, f"kind right {value:.1%} < 97%"


def test_reason_is_right_for_at_least_85_percent(scores: Scores) -> None:
    value = scores.overall.reason
    assert value >= 0.85, f"reason right {value:.1%} < 85%"
