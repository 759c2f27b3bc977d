"""The SMTP client: implicit TLS, STARTTLS or plain; AUTH; PIPELINING; many letters a session."""

from mailfleet.smtp.client import SmtpClient, open_session

__all__ = ["SmtpClient", "open_session"]
