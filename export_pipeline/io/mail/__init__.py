"""Email to the creator: SMTP through the standard library (`smtp`), the message and its
headers (`message`), what it says about a request (`content`) and the replaceable
templates it says it with (`templates`)."""

from export_pipeline.io.mail.content import KINDS, email_values
from export_pipeline.io.mail.message import DELIVERY_HEADER, REQUEST_HEADER, compose, mailbox
from export_pipeline.io.mail.smtp import SECURITY, SendResult, SmtpConfig, SmtpSender
from export_pipeline.io.mail.templates import Rendered, Templates

__all__ = [
    "DELIVERY_HEADER",
    "KINDS",
    "REQUEST_HEADER",
    "SECURITY",
    "Rendered",
    "SendResult",
    "SmtpConfig",
    "SmtpSender",
    "Templates",
    "compose",
    "email_values",
    "mailbox",
]
