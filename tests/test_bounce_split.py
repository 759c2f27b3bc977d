"""The fast MIME splitter builds the same Message tree as the email package (compat32)."""

from __future__ import annotations

import email
import email.policy
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from mailfleet.bounces.split import split_message

CORPUS = sorted((Path(__file__).parent / "data" / "bounce-corpus" / "eml").glob("*.eml"))


def _tree(msg: Message, depth: int = 0) -> list[Any]:
    out: list[Any] = [(depth, msg.get_unixfrom(), list(msg.raw_items()), msg.get_default_type(),
                       msg.preamble, msg.epilogue if msg.is_multipart() else None)]
    payload = vars(msg).get("_payload")
    if isinstance(payload, list):
        for sub in payload:
            out += _tree(sub, depth + 1)
    else:
        out.append((depth, payload))
    return out


def _same(raw: bytes) -> None:
    assert _tree(split_message(raw)) == _tree(
        email.message_from_bytes(raw, policy=email.policy.compat32))


def test_every_corpus_report_splits_into_the_email_package_tree() -> None:
    for path in CORPUS:
        _same(path.read_bytes())


EDGE_CASES = {
    "no headers": b"\r\nbody only\r\n",
    "headers only": b"From: a@b.example\r\nSubject: x",
    "lone CR line ends": b"From: a@b.example\rSubject: x\r\rbody\r",
    "non-header line ends the headers": b"From: a@b.example\r\nnot a header\r\nbody\r\n",
    "unix From line": b"From a@b.example Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody\n",
    "continuation first": b" folded\r\nSubject: x\r\n\r\nbody\r\n",
    "multipart without boundary": b"Content-Type: multipart/mixed\r\n\r\n--x\r\nA\r\n",
    "start boundary missing": b"Content-Type: multipart/mixed; boundary=x\r\n\r\nno parts\r\n",
    "no closing boundary": b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nA\r\n",
    "boundary with spaces and preamble": (b"Content-Type: multipart/mixed; boundary=\"x y\"\r\n"
                                          b"\r\npre\r\n--x y  \r\n\r\nA\r\n--x y-- \r\nepi\r\n"),
    "boundary as a prefix is no boundary": (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
                                            b"--x\r\n\r\n--xy\r\n--x--\r\n"),
    "digest parts": (b"Content-Type: multipart/digest; boundary=x\n\n--x\n\nFrom: a@b.example\n"
                     b"\nhi\n--x--\n"),
    "delivery-status blocks": (b"Content-Type: message/delivery-status\r\n\r\n"
                               b"Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; a@b\r\n"
                               b"Action: failed\r\n\r\n\r\nStatus: 5.1.1\r\n"),
    "nested message": (b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\n"
                       b"Content-Type: message/rfc822\r\n\r\nFrom: a@b.example\r\n\r\nhi\r\n"
                       b"--x--\r\n"),
    "8-bit text": "Content-Type: text/plain; charset=utf-8\r\n\r\nпривет\r\n".encode(),
}


@pytest.mark.parametrize("raw", list(EDGE_CASES.values()), ids=list(EDGE_CASES))
def test_edge_case_splits_into_the_email_package_tree(raw: bytes) -> None:
    _same(raw)


PARAMETER_VALUES = [
    'multipart/report; report-type=delivery-status;\r\n\tboundary="=_a;b"',
    'multipart/mixed; BOUNDARY = "<x y>" ; boundary=second',
    'text/plain; charset="UTF-8"; format=flowed',
    'text/plain; charset=""; name="a=b"',
    'multipart/alternative; boundary="\\"quoted\\""',  # a backslash: read by the email package
    "text/plain; charset*=utf-8''%C3%A9",  # RFC 2231: read by the email package
    'multipart/mixed; boundary="unclosed; charset=x',
    "multipart/mixed;; boundary ;=x; boundary=\"trailing  \"",
]


@pytest.mark.parametrize("value", PARAMETER_VALUES)
def test_content_type_parameters_read_as_the_email_package_reads_them(value: str) -> None:
    from mailfleet.bounces.mime import content_charset, content_param

    head = f"Content-Type: {value}\r\n\r\n".encode()
    boundary = email.message_from_bytes(head, policy=email.policy.compat32).get_boundary()
    body = f"--{boundary}\r\n\r\nA\r\n--{boundary}--\r\n".encode() if boundary else b"A\r\n"
    _same(head + body)  # the parts are found at the boundary the email package reads
    ours = split_message(head + body)
    reference = email.message_from_bytes(head + body, policy=email.policy.compat32)
    assert content_charset(ours) == reference.get_content_charset()
    for name in ("boundary", "charset", "report-type", "name", "format"):
        assert content_param(ours, name) == str(reference.get_param(name) or "")
