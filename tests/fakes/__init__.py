"""Test-owned fakes for external services: a loopback Twilio API and an SMTP sink."""

from .smtp_sink import SinkEnvelope, SmtpSink
from .twilio_stub import TwilioStub

__all__ = ["SinkEnvelope", "SmtpSink", "TwilioStub"]
