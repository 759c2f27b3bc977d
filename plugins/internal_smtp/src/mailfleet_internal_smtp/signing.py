"""DKIM signing of outgoing letters with dkimpy (the ``dkim`` extra).

Server options: ``dkim_selector``, ``dkim_domain`` and ``dkim_key_file`` (a PEM RSA or
Ed25519 private key); all three or none.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from mailfleet.plugin import Classification, OutgoingLetter, Server, SmtpError, Stage

OPTIONS = ("dkim_selector", "dkim_domain", "dkim_key_file")


@attrs.frozen
class DkimKey:
    """What signs a server's letters: selector, domain and the private key's PEM bytes."""

    selector: str
    domain: str
    key: bytes = attrs.field(repr=False)


def configured(server: Server) -> bool:
    """True when any DKIM option is set."""
    return any(server.options.get(name) for name in OPTIONS)


def problems(server: Server) -> list[str]:
    """What is wrong with the server's DKIM options (empty when fine or not configured)."""
    if not configured(server):
        return []
    where = f"servers[{server.name}].options"
    out = [f"{where}.{name}: required with the other dkim_* options (a non-empty string)"
           for name in OPTIONS if not isinstance(server.options.get(name), str)
           or not server.options.get(name)]
    if out:
        return out
    try:
        import dkim  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        from dkim.crypto import parse_pem_private_key  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return [f"{where}: DKIM signing needs dkimpy; install mailfleet-internal-smtp[dkim]"]
    path = Path(str(server.options["dkim_key_file"])).expanduser()
    try:
        pem = path.read_bytes()
    except OSError as exc:
        return [f"{where}.dkim_key_file: cannot read {str(path)!r} ({exc.strerror}); check the "
                f"path and its permissions"]
    try:
        parse_pem_private_key(pem)
    except Exception:
        return [f"{where}.dkim_key_file: {str(path)!r} is not a PEM RSA private key; make one "
                f"with `openssl genrsa -out dkim.key 2048`"]
    return []


def load_key(server: Server) -> DkimKey:
    """The server's DKIM key, read now (so a rotated key file is picked up)."""
    options = server.options
    pem = Path(str(options["dkim_key_file"])).expanduser().read_bytes()
    return DkimKey(str(options["dkim_selector"]), str(options["dkim_domain"]), pem)


def sign(data: bytes, key: DkimKey) -> bytes:
    """``data`` with a ``DKIM-Signature`` header prepended (relaxed/relaxed)."""
    import dkim

    header = dkim.sign(data, key.selector.encode(), key.domain.encode(), key.key,
                       canonicalize=(b"relaxed", b"relaxed"))
    assert isinstance(header, bytes)
    return header + data


def sign_letter(server: Server, letter: OutgoingLetter) -> None:
    """Prepend the DKIM signature of the letter's final bytes (after every other change)."""
    try:
        signed = sign(letter.data, load_key(server))
    except Exception as exc:  # an unreadable or broken key must not look like a letter fault
        raise SmtpError(Stage.DATA, f"DKIM signing failed: {exc}",
                        classification=Classification.SERVER, server=server.name) from None
    letter.data = signed
