"""Real-server test helpers for mailfleet and its plugins (all servers listen on 127.0.0.1 only).

Modules: :mod:`.certs` (throwaway CAs), :mod:`.smtpd` (scriptable in-process SMTP provider),
:mod:`.dovecot` (private IMAP/POP3 server), :mod:`.postfix` (private MTA), :mod:`.smtp_sink`
(Postfix ``smtp-sink``/``smtp-source``), :mod:`.postgres` (private PostgreSQL) and
:mod:`.pytest_plugin` (the fixtures).
"""

from mailfleet_testing._util import ServerUnavailable, free_port, servers_required

__all__ = ["ServerUnavailable", "free_port", "servers_required"]
