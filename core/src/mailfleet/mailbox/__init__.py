"""Reading the bounce mailbox over IMAP or POP3, incrementally and without losing messages."""

from mailfleet.mailbox.settings import MailboxSettings, ReaderState, resolve_mailbox

__all__ = ["MailboxSettings", "ReaderState", "resolve_mailbox"]
