"""Throwaway TLS material for 127.0.0.1/localhost, made with ``trustme``.

``make_certs(dir)`` writes two independent CA + leaf pairs:

* ``dir/ca.pem``, ``dir/server-chain.pem``, ``dir/server.key`` - the *trusted* pair that every
  test server uses and clients trust;
* ``dir/untrusted/{ca.pem,server-chain.pem,server.key}`` - a second CA nobody trusts, to prove that
  a client refuses a server presenting a certificate it cannot verify.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost")


def client_context(cafile: str | Path | None) -> ssl.SSLContext:
    """A verifying client context (hostname checks on) trusting only ``cafile``."""
    ca = str(cafile) if cafile else None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def insecure_client_context() -> ssl.SSLContext:
    """A client context that verifies nothing (for probes and negative tests only)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class CertBundle:
    """One CA and a leaf for 127.0.0.1/localhost, as files."""

    directory: Path
    ca_file: Path
    cert_file: Path  # leaf followed by its chain (server-chain.pem)
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """Verifying client context that trusts this bundle's CA only."""
        return client_context(self.ca_file)

    def server_context(self) -> ssl.SSLContext:
        """Server context presenting this bundle's leaf (TLS 1.2+)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        ctx.num_tickets = 0  # avoids a ~40 ms delayed-ACK stall before the first reply
        return ctx


@dataclass(frozen=True)
class TLSCerts:
    """The trusted bundle used by all test servers plus an untrusted one for negative tests."""

    trusted: CertBundle
    untrusted: CertBundle

    @property
    def ca_file(self) -> Path:
        """CA file clients should trust."""
        return self.trusted.ca_file

    @property
    def cert_file(self) -> Path:
        """Trusted server certificate chain (server-chain.pem)."""
        return self.trusted.cert_file

    @property
    def key_file(self) -> Path:
        """Trusted server private key."""
        return self.trusted.key_file

    def client_context(self) -> ssl.SSLContext:
        """Verifying client context trusting the test CA."""
        return self.trusted.client_context()

    def server_context(self) -> ssl.SSLContext:
        """Server context with the trusted leaf."""
        return self.trusted.server_context()


def _write_bundle(directory: Path) -> CertBundle:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="mailfleet test CA")
    leaf = ca.issue_cert(*SERVER_NAMES)
    bundle = CertBundle(
        directory=directory,
        ca_file=directory / "ca.pem",
        cert_file=directory / "server-chain.pem",
        key_file=directory / "server.key",
    )
    ca.cert_pem.write_to_path(str(bundle.ca_file))
    bundle.cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(bundle.key_file))
    return bundle


def make_certs(directory: str | Path) -> TLSCerts:
    """Create the trusted and the untrusted bundle under ``directory`` (created if missing)."""
    base = Path(directory)
    return TLSCerts(trusted=_write_bundle(base), untrusted=_write_bundle(base / "untrusted"))
