"""Notifier: renders and sends the contacts triage decides on, and tracks their delivery."""
