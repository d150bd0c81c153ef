"""Triage: turns register marks into decisions about whom to contact, and when."""
