#!/usr/bin/env bash
# Install the Debian packages the real-server test fixtures need (idempotent; run as root).
#   dovecot-imapd dovecot-pop3d  -> private Dovecot (IMAP/IMAPS/POP3/POP3S)
#   postfix                      -> private Postfix + smtp-sink/smtp-source
#   postgresql                   -> initdb/pg_ctl (the packaged cluster is never started)
#   openssl                      -> TLS tooling
# Also creates the `mailtest` system user that owns Dovecot test mailboxes (Dovecot refuses uid 0).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "ci_install.sh: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
PKGS=(dovecot-imapd dovecot-pop3d postfix postgresql openssl)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    # Postfix: no debconf questions, no /etc/postfix/main.cf setup.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string localhost" | debconf-set-selections
    # Never start packaged daemons (there is no systemd; keep any existing policy).
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
    if [ "$created_policy" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
else
    echo "ci_install.sh: packages already installed: ${PKGS[*]}"
fi

if ! id -u mailtest >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mailtest
fi

# Sanity: the binaries the fixtures look for.
for b in /usr/sbin/dovecot /usr/sbin/postfix /usr/sbin/smtp-sink /usr/sbin/smtp-source; do
    [ -x "$b" ] || { echo "ci_install.sh: missing $b after install" >&2; exit 1; }
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null
echo "ci_install.sh: ok"
