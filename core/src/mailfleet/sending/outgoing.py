"""A letter on its way out: what the letter hooks may change before the transport sends it.

``mailfleet_prepare_letter`` implementations add headers (provider headers, a third party's
tracking header) or replace the bytes; then every ``mailfleet_sign_letter`` implementation
signs the final bytes (DKIM, ARC), each prepending its own signature header. So several
plugins compose on one letter, and signatures cover every change.
"""

from __future__ import annotations

import attrs

from mailfleet.addresses import check_header
from mailfleet.sending.envelope import Envelope


@attrs.define
class OutgoingLetter:
    """One letter being prepared on a server: envelope sender, recipients and bytes.

    ``letter_id`` is mailfleet's id of the letter (``None`` for a test letter).
    """

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    letter_id: str | None = None

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> OutgoingLetter:
        return cls(envelope.mail_from, envelope.rcpt_to, envelope.data, envelope.letter_id)

    def envelope(self) -> Envelope:
        """The envelope the transport sends."""
        return Envelope(self.mail_from, self.rcpt_to, self.data, self.letter_id)

    def add_header(self, name: str, value: str) -> None:
        """Prepend ``name: value`` to the header block (CR/LF in either is refused)."""
        check_header(name, name)
        check_header(name, value)
        if not name or ":" in name or " " in name:
            raise ValueError(f"{name!r} is not a header name")
        self.data = f"{name}: {value}\r\n".encode() + self.data

    def prepend(self, header: bytes) -> None:
        """Prepend a ready header (a signer's folded ``DKIM-Signature: ...\\r\\n``)."""
        self.data = header + self.data

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), unfolded, or ``None``."""
        head = self.data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
        wanted = name.lower().encode()
        for line in head.split(b"\r\n"):
            key, sep, value = line.partition(b":")
            if sep and key.strip().lower() == wanted:
                return value.strip().decode("utf-8", "replace")
        return None
