"""A private Postfix (the "internal MTA") on free loopback ports, relaying to a given SMTP port.

``port`` speaks plain SMTP with STARTTLS (AUTH only after STARTTLS), ``smtps_port`` is implicit
TLS. Mail for ``@test.local`` is delivered into the Dovecot maildirs (``<local>@test.local`` ->
the Dovecot mailbox with that login), everything else is relayed to ``[127.0.0.1]:relay_port``
with one try only, so a 4xx/5xx from the relay produces a real RFC 3464 DSN at once. SASL AUTH goes
through the Dovecot instance when one is given. Root only (Postfix drops to the ``postfix`` user).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

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
from mailfleet_testing.certs import CertBundle, TLSCerts
from mailfleet_testing.dovecot import DOMAIN, MAIL_USER, DovecotServer

__all__ = ["PostfixServer"]

_UNIX_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (PID 1 may reap late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


class PostfixServer(PrivateServer):
    """A private Postfix 3.x instance in a temp dir (``postfix -c DIR/etc``)."""

    host = LOCALHOST

    def __init__(self, tls: CertBundle | TLSCerts, relay_port: int | None,
                 dovecot: DovecotServer | None = None, *, one_try: bool = True,
                 myhostname: str = "internal.test.local", directory: Path | None = None,
                 start_timeout: float = 20.0) -> None:
        self.tls = tls
        self.relay_port = relay_port  # None: outside recipients are refused (error transport)
        self.dovecot = dovecot
        self.one_try = one_try
        self.myhostname = myhostname
        self._own_dir = directory is None
        self._directory = directory  # created by start() when None
        self.start_timeout = start_timeout
        self.port = self.smtps_port = 0
        self.master_pid: int | None = None

    @property
    def config_dir(self) -> Path:
        """``-c`` directory (main.cf, master.cf)."""
        return self.directory / "etc"

    @property
    def queue_dir(self) -> Path:
        """queue_directory (kept outside the config dir)."""
        return self.directory / "spool"

    @property
    def log_file(self) -> Path:
        """maillog_file."""
        return self.directory / "postfix.log"

    @property
    def sasl(self) -> bool:
        """True when AUTH is offered (through Dovecot)."""
        return self.dovecot is not None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> PostfixServer:
        """Write the config, ``postfix check``, start ``master -w``, wait for both ports."""
        postfix = find_binary("postfix")
        master = find_binary("master", "/usr/lib/postfix/sbin", "/usr/libexec/postfix")
        if postfix is None or master is None:
            raise ServerUnavailable("postfix not installed (see tests/infra/ci_install.sh)")
        if not is_root():
            raise ServerUnavailable("a private Postfix needs root")
        if user_ids("postfix") is None:
            raise ServerUnavailable("system user 'postfix' missing")
        if self._directory is None:
            self._directory = make_server_dir("mailfleet-postfix-")
        self.port, self.smtps_port = free_ports(2)
        env = {**os.environ, "MAIL_CONFIG": str(self.config_dir)}
        try:
            self._write_config()
            self._run([postfix, "-c", str(self.config_dir), "check"], env)
            self._run([master, "-c", str(self.config_dir), "-w"], env)
            pid_file = self.queue_dir / "pid" / "master.pid"
            with contextlib.suppress(OSError, ValueError):
                self.master_pid = int(pid_file.read_text().split()[0])
            wait_for_ports([self.port, self.smtps_port], self.start_timeout, None, "postfix",
                           self.log_file)
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, cmd: list[str], env: dict[str, str]) -> None:
        res = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                             check=False, timeout=60)
        if res.returncode == 0:
            return
        # Postfix commands fail silently without a tty/syslog: rerun under script(1) to see why.
        why = res.stderr.decode(errors="replace")
        script = find_binary("script")
        if script and not why.strip():
            quoted = " ".join(f"'{c}'" for c in cmd)
            again = subprocess.run([script, "-qec", quoted, "/dev/null"], env=env,
                                   stdin=subprocess.DEVNULL, capture_output=True, check=False,
                                   timeout=60)
            why = again.stdout.decode(errors="replace")
        raise RuntimeError(f"{cmd[0]} failed (rc={res.returncode}): {why}"
                           f"{log_tail(self.log_file)}")

    def stop(self) -> None:
        """SIGKILL the master's process group, then remove the directory."""
        if self.master_pid is not None:
            kill_group(self.master_pid)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(self.master_pid):
                time.sleep(0.01)
            self.master_pid = None
        if self._own_dir and self._directory is not None:
            remove_tree(self._directory)
            self._directory = None


    # -- config --------------------------------------------------------------------------------
    def _write_config(self) -> None:
        d = self.directory
        etc = self.config_dir
        etc.mkdir(exist_ok=True)
        self.queue_dir.mkdir(exist_ok=True)
        data_dir = d / "data"
        data_dir.mkdir(exist_ok=True)
        pf_uid, pf_gid = user_ids("postfix") or (0, 0)
        os.chown(data_dir, pf_uid, pf_gid)
        lines = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue_dir}",
            f"data_directory = {data_dir}",
            f"maillog_file = {self.log_file}",
            f"maillog_file_prefixes = {d}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            f"inet_interfaces = {LOCALHOST}",
            "inet_protocols = ipv4",
            f"myhostname = {self.myhostname}",
            f"mydomain = {DOMAIN}",
            "myorigin = $myhostname",
            "mydestination =",
            "mynetworks = 127.0.0.0/8",
            "alias_maps =",
            "alias_database =",
            "local_recipient_maps =",
            "smtp_dns_support_level = disabled",
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
            "reject_unauth_destination",
            f"smtpd_tls_cert_file = {self.tls.cert_file}",
            f"smtpd_tls_key_file = {self.tls.key_file}",
            "smtpd_tls_security_level = may",
            "smtp_tls_security_level = may",
            "smtpd_tls_auth_only = yes",
        ]
        if self.relay_port is not None:
            lines.append(f"relayhost = [{LOCALHOST}]:{self.relay_port}")
        else:
            lines.append("default_transport = error:5.7.1 outbound disabled")
        if self.one_try:
            lines += ["maximal_queue_lifetime = 0", "bounce_queue_lifetime = 0"]
        if self.dovecot is not None:
            # Every <name>@test.local exists and is delivered by dovecot-lda into the Dovecot
            # mailbox with that login (a regexp virtual map may not substitute paths).
            lines += [
                "smtpd_sasl_auth_enable = yes",
                "smtpd_sasl_type = dovecot",
                f"smtpd_sasl_path = {self.dovecot.auth_socket}",
                f"virtual_mailbox_domains = {DOMAIN}",
                "virtual_mailbox_maps = static:dovecot",
                "virtual_transport = dovecot",
                "recipient_delimiter = +",  # name+ext@test.local reaches name's mailbox
                "dovecot_destination_recipient_limit = 1",
            ]
        (etc / "main.cf").write_text("\n".join(lines) + "\n")
        master_cf = (
            f"{LOCALHOST}:{self.port} inet n - n - - smtpd\n"
            f"{LOCALHOST}:{self.smtps_port} inet n - n - - smtpd\n"
            "  -o smtpd_tls_wrappermode=yes\n"
            "  -o smtpd_tls_auth_only=no\n"
            + _UNIX_SERVICES
        )
        if self.dovecot is not None:
            lda = self.dovecot.lda_binary
            if lda is None:
                raise ServerUnavailable("dovecot-lda not found")
            user = MAIL_USER if is_root() else ""
            master_cf += (
                "dovecot   unix  -       n       n       -       -       pipe\n"
                f"  flags=DRh user={user} argv={lda} -c {self.dovecot.lda_config_file}"
                " -f ${sender} -d ${user}@${domain}\n"
            )
        (etc / "master.cf").write_text(master_cf)
        # Postfix waits ~1 s before trusting files modified less than a second ago: backdate them.
        past = time.time() - 10
        for f in etc.iterdir():
            os.utime(f, (past, past))
