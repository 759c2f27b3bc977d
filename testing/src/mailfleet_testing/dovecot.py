"""A private Dovecot 2.3 instance (IMAP, IMAPS, POP3, POP3S on 127.0.0.1) and a ``Mailbox`` helper.

Users: ``bounces@test.local`` (password ``bounces-pw``, passwd-file) and *any other name* with the
password ``ANY_USER_PASSWORD`` (static passdb), so every fresh name is a fresh, empty mailbox.
Any user also logs in with XOAUTH2 and a token from :meth:`DovecotServer.oauth2_token` (a JWT
that Dovecot checks locally against the instance's own key).
As root the mail files belong to the system user ``mailtest`` (created if missing: Dovecot refuses
uid 0); as another user everything runs as that user. Teardown kills the process group.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import hashlib
import hmac
import json
import os
import poplib
import pwd
import secrets
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from imapclient import IMAPClient

from mailfleet_testing._util import (
    LOCALHOST,
    PrivateServer,
    ServerUnavailable,
    find_binary,
    free_ports,
    is_root,
    kill_group,
    log_tail,
    make_server_dir,
    remove_tree,
    user_ids,
    wait_for_ports,
)
from mailfleet_testing.certs import CertBundle, TLSCerts, client_context

__all__ = ["ANY_USER_PASSWORD", "BOUNCES_LOGIN", "BOUNCES_PASSWORD", "DovecotServer", "Mailbox"]

DOMAIN = "test.local"
BOUNCES_LOGIN = "bounces@test.local"
BOUNCES_PASSWORD = "bounces-pw"  # noqa: S105 - throwaway test credential
ANY_USER_PASSWORD = "test-pw"  # noqa: S105 - throwaway test credential
MAIL_USER = "mailtest"


def ensure_mail_user(name: str = MAIL_USER) -> tuple[int, int]:
    """(uid, gid) of the system user owning test mail; as root, create it when missing."""
    ids = user_ids(name)
    if ids is None and is_root():
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True,
        )
        ids = user_ids(name)
    if ids is None:
        raise ServerUnavailable(f"system user {name!r} is missing (run tests/infra/ci_install.sh)")
    return ids


@dataclass(frozen=True)
class Mailbox:
    """A Dovecot mailbox: credentials, connection info and IMAP/POP3 helpers."""

    login: str
    password: str
    host: str
    imap_port: int
    imaps_port: int
    pop3_port: int
    pop3s_port: int
    ca_file: Path

    @property
    def address(self) -> str:
        """The e-mail address (same as the login)."""
        return self.login

    def ssl_context(self) -> ssl.SSLContext:
        """Verifying client context trusting the test CA."""
        return client_context(self.ca_file)

    @contextlib.contextmanager
    def imap(self, tls: str = "ssl", timeout: float = 10.0) -> Iterator[IMAPClient]:
        """Logged-in IMAPClient; ``tls`` is ``"ssl"`` (IMAPS), ``"starttls"`` or ``"plain"``."""
        if tls == "ssl":
            client = IMAPClient(self.host, port=self.imaps_port, ssl=True,
                                ssl_context=self.ssl_context(), timeout=timeout)
        else:
            client = IMAPClient(self.host, port=self.imap_port, ssl=False, timeout=timeout)
            if tls == "starttls":
                client.starttls(self.ssl_context())
        try:
            client.login(self.login, self.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()
            with contextlib.suppress(Exception):
                client.shutdown()

    @contextlib.contextmanager
    def pop3(self, tls: str = "ssl", timeout: float = 10.0) -> Iterator[poplib.POP3]:
        """Logged-in POP3 client; ``tls``: ``"ssl"`` (POP3S), ``"starttls"`` (STLS), ``"plain"``."""
        client: poplib.POP3
        if tls == "ssl":
            client = poplib.POP3_SSL(self.host, self.pop3s_port, context=self.ssl_context(),
                                     timeout=timeout)
        else:
            client = poplib.POP3(self.host, self.pop3_port, timeout=timeout)
            if tls == "starttls":
                client.stls(context=self.ssl_context())
        try:
            client.user(self.login)
            client.pass_(self.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.quit()
            with contextlib.suppress(Exception):
                client.close()

    def append(self, raw: bytes, folder: str = "INBOX", flags: tuple[str, ...] = ()) -> None:
        """Store ``raw`` in ``folder`` with IMAP APPEND (the folder is created if missing)."""
        with self.imap() as c:
            if folder.upper() != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            c.append(folder, raw, flags=flags)

    def fetch_all(self, folder: str = "INBOX") -> list[bytes]:
        """Every message in ``folder`` (RFC822 bytes), oldest first; [] if the folder is missing."""
        with self.imap() as c:
            if folder.upper() != "INBOX" and not c.folder_exists(folder):
                return []
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            data = c.fetch(uids, ["RFC822"]) if uids else {}
            return [bytes(data[u][b"RFC822"]) for u in sorted(data)]

    def wait_for_messages(self, count: int = 1, timeout: float = 10.0,
                          folder: str = "INBOX") -> list[bytes]:
        """Poll until ``folder`` holds at least ``count`` messages; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.fetch_all(folder)
            if len(msgs) >= count:
                return msgs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(msgs)} of {count} messages in {folder} after {timeout}s")
            time.sleep(0.05)


class DovecotServer(PrivateServer):
    """A private Dovecot 2.3 listening on four free ports of 127.0.0.1."""

    host = LOCALHOST

    def __init__(self, tls: CertBundle | TLSCerts, directory: Path | None = None,
                 start_timeout: float = 15.0) -> None:
        self.tls = tls
        self._own_dir = directory is None
        self._directory = directory  # created by start() when None
        self.start_timeout = start_timeout
        self.imap_port = self.imaps_port = self.pop3_port = self.pop3s_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""
        self._oauth2_key = secrets.token_bytes(32)

    def oauth2_token(self, login: str, lifetime: float = 600) -> str:
        """An OAuth2 access token (a JWT signed with this instance's key) that Dovecot takes
        for ``login`` over IMAP ``AUTHENTICATE XOAUTH2`` and POP3 ``AUTH XOAUTH2``."""
        def part(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        now = int(time.time())
        head = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = part(json.dumps({"sub": login, "iat": now, "nbf": now,
                                "exp": now + int(lifetime)}).encode())
        mac = hmac.new(self._oauth2_key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{part(mac)}"

    @property
    def config_file(self) -> Path:
        """dovecot.conf of this instance."""
        return self.directory / "dovecot.conf"

    @property
    def log_file(self) -> Path:
        """Dovecot's own log."""
        return self.directory / "dovecot.log"

    @property
    def mail_dir(self) -> Path:
        """Homes live in ``mail_dir/<domain>/<user>`` with ``Maildir/`` inside."""
        return self.directory / "mail"

    @property
    def auth_socket(self) -> Path:
        """SASL socket for Postfix (only when a ``postfix`` user exists and we run as root)."""
        return self.directory / "run" / "auth-postfix"

    @property
    def lda_config_file(self) -> Path:
        """Config for ``dovecot-lda`` run as the mail user (Postfix delivers with it)."""
        return self.directory / "lda.conf"

    @property
    def lda_binary(self) -> str | None:
        """Path of ``dovecot-lda`` if installed."""
        return find_binary("dovecot-lda", "/usr/lib/dovecot", "/usr/libexec/dovecot")

    @property
    def mail_uid_gid(self) -> tuple[int, int]:
        """(uid, gid) that owns the mail files."""
        return ensure_mail_user() if is_root() else (os.getuid(), os.getgid())

    @property
    def ca_file(self) -> Path:
        """CA clients should trust."""
        return self.tls.ca_file

    def mailbox(self, login: str | None = None, password: str | None = None) -> Mailbox:
        """A mailbox view: a fresh ``u<hex>@test.local`` by default (created on first use)."""
        login = login or f"u{uuid.uuid4().hex[:16]}@{DOMAIN}"
        if password is None:
            password = BOUNCES_PASSWORD if login == BOUNCES_LOGIN else ANY_USER_PASSWORD
        return Mailbox(login, password, self.host, self.imap_port, self.imaps_port,
                       self.pop3_port, self.pop3s_port, self.tls.ca_file)

    def bounces(self) -> Mailbox:
        """The fixed ``bounces@test.local`` mailbox (passwd-file user)."""
        return self.mailbox(BOUNCES_LOGIN)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> DovecotServer:
        """Write the config, start ``dovecot -F`` in its own session and wait for all ports."""
        binary = find_binary("dovecot")
        if binary is None:
            raise ServerUnavailable("dovecot not installed (apt-get install dovecot-imapd "
                                    "dovecot-pop3d, see tests/infra/ci_install.sh)")
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                      check=False).stdout.strip()
        if not self.version.startswith("2.3"):
            raise ServerUnavailable(f"Dovecot {self.version!r} found; these fixtures write 2.3 "
                                    "configuration (Debian 12)")
        if self._directory is None:
            self._directory = make_server_dir("mailfleet-dovecot-")
        self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = free_ports(4)
        stderr_path = self.directory / "dovecot.stderr"
        try:
            self._write_config()
            with open(stderr_path, "ab") as err:
                # Dovecot keeps fd 2 open for its whole life: never a pipe.
                self.proc = subprocess.Popen(
                    [binary, "-F", "-c", str(self.config_file)],
                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True,
                )
            wait_for_ports([self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port],
                           self.start_timeout, self.proc, "dovecot", self.log_file)
        except RuntimeError as exc:
            tail = log_tail(stderr_path)
            self.stop()
            raise RuntimeError(f"{exc}{tail}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGKILL the process group (Dovecot 2.3 needs 1-3 s for a graceful stop)."""
        if self.proc is not None:
            kill_group(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            self.proc = None
        if self._own_dir and self._directory is not None:
            remove_tree(self._directory)
            self._directory = None


    # -- config ------------------------------------------------------------------------------
    def _write_config(self) -> None:
        d = self.directory
        for sub in ("run", "state", "tls"):
            (d / sub).mkdir(exist_ok=True)
        self.mail_dir.mkdir(exist_ok=True)
        if is_root():
            uid, gid = ensure_mail_user()
            os.chown(self.mail_dir, uid, gid)
            login_user, internal_user, internal_group = "dovenull", "dovecot", "dovecot"
            chroot = ""
            first_uid = min(uid, 500)
        else:
            uid, gid = os.getuid(), os.getgid()
            me = pwd.getpwuid(uid).pw_name
            login_user = internal_user = me
            internal_group = grp.getgrgid(gid).gr_name
            chroot = "  chroot =\n"
            first_uid = uid
        passwd = d / "passwd"
        passwd.write_text(f"{BOUNCES_LOGIN}:{{PLAIN}}{BOUNCES_PASSWORD}::::::\n")
        # XOAUTH2: tokens are JWTs checked locally against this instance's HS256 key.
        keys = d / "oauth2-keys"
        (keys / "default" / "HS256").mkdir(parents=True, exist_ok=True)
        (keys / "default" / "HS256" / "default").write_text(
            base64.b64encode(self._oauth2_key).decode())
        oauth2 = d / "oauth2.conf.ext"
        oauth2.write_text(f"introspection_mode = local\n"
                          f"local_validation_key_dict = fs:posix:prefix={keys}/\n"
                          f"username_attribute = sub\n")
        sasl = ""
        if is_root() and user_ids("postfix") is not None:
            sasl = ("service auth {\n  unix_listener auth-postfix {\n    mode = 0660\n"
                    "    user = postfix\n    group = postfix\n  }\n}\n")
        conf = f"""\
instance_name = dovecot-test-{d.name}
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log_file}
info_log_path = {self.log_file}
protocols = imap pop3
listen = {LOCALHOST}
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = {first_uid}
last_valid_uid = 0
ssl = yes
ssl_cert = <{self.tls.cert_file}
ssl_key = <{self.tls.key_file}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_verbose = yes
auth_failure_delay = 0
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {oauth2}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
passdb {{
  driver = static
  args = password={ANY_USER_PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail_dir}/%d/%n allow_all_users=yes
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
{sasl}service anvil {{
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = {LOCALHOST}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {LOCALHOST}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
{chroot}  inet_listener pop3 {{
    address = {LOCALHOST}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    address = {LOCALHOST}
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
"""
        self.config_file.write_text(conf)
        lda_log = d / "lda.log"
        lda_log.touch()
        os.chown(lda_log, uid, gid)
        self.lda_config_file.write_text(f"""\
base_dir = {d}/run
log_path = {lda_log}
info_log_path = {lda_log}
first_valid_uid = {first_uid}
last_valid_uid = 0
ssl = no
stats_writer_socket_path =
postmaster_address = postmaster@{DOMAIN}
passdb {{
  driver = static
  args = password={ANY_USER_PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail_dir}/%d/%n allow_all_users=yes
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
""")

