"""Contact commands carry triage's signature, so the notifier sends only what triage decided
(docs/security.md "Broker").

Triage signs each contact request and cancellation with HMAC-SHA256 over the exact body bytes,
keyed by `CONTACT_SIGNING_KEY`; the signature travels in the `x-signature` header next to the
key's id (`x-signature-key`). The notifier checks it before reading the body: it accepts the
current key and, while a key is being rotated, `CONTACT_SIGNING_KEY_PREVIOUS`. A message with
no signature, an unknown key id or a signature that does not match is refused with a reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

SIGNATURE_HEADER = "x-signature"
KEY_ID_HEADER = "x-signature-key"
# Shorter keys are refused by the settings: 32 characters of `secrets.token_urlsafe` carry
# about 190 bits.
MIN_KEY_LENGTH = 32

UNSIGNED = "unsigned contact request"
BAD_SIGNATURE = "bad signature"
UNKNOWN_KEY = "bad signature: unknown signing key"
NOT_CONFIGURED = "unsigned contact request: no CONTACT_SIGNING_KEY configured to verify it"


class SigningKey:
    """One secret and the id that names it in messages (a digest: the id reveals nothing
    about the secret, and both services derive the same id from the same setting)."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_KEY_LENGTH:
            raise ValueError(f"a signing key needs at least {MIN_KEY_LENGTH} characters")
        self._secret = secret.encode()
        self.key_id = hashlib.sha256(b"contact-signing-key-id\n" + self._secret).hexdigest()[:16]

    def signature(self, body: bytes) -> str:
        return hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    def headers(self, body: bytes) -> dict[str, Any]:
        """The headers that sign `body`."""
        return {SIGNATURE_HEADER: self.signature(body), KEY_ID_HEADER: self.key_id}


class SignatureCheck:
    """Verifies a message against the keys the notifier accepts (current first)."""

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self._keys = {key.key_id: key for key in keys}

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def refusal(self, headers: Mapping[str, Any] | None, body: bytes) -> str | None:
        """None when `body` carries a valid signature, otherwise why it is refused."""
        signature = _text((headers or {}).get(SIGNATURE_HEADER))
        key_id = _text((headers or {}).get(KEY_ID_HEADER))
        if not self._keys:
            return NOT_CONFIGURED
        if signature is None or key_id is None:
            return UNSIGNED
        key = self._keys.get(key_id)
        if key is None:
            return UNKNOWN_KEY
        if not hmac.compare_digest(key.signature(body), signature):
            return BAD_SIGNATURE
        return None


def signing_keys(*secrets: str | None) -> list[SigningKey]:
    """Keys for the secrets that are set, in the order given."""
    return [SigningKey(secret) for secret in secrets if secret]


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) and value else None
