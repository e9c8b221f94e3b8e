"""Card tokens: a keyed hash of the card number, so nothing outside the validated zone carries a PAN.

HMAC-SHA256 with the platform's secret key (``FRAUD_CARD_TOKEN_KEY``), truncated to 24 hex characters:
stable for a key (joins across days work), useless without it (no dictionary attack on the ~10^16 PANs).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from training_lib.config import Settings

TOKEN_HEX_CHARS = 24


class MissingTokenKey(RuntimeError):
    """No card-token key is configured; the message says how to set one."""


def token_key(settings: Settings) -> bytes:
    if not settings.card_token_key:
        raise MissingTokenKey(
            "FRAUD_CARD_TOKEN_KEY is not set: `make up` generates one into .local/secrets; elsewhere set it "
            "to a long random secret (the same everywhere the platform runs)"
        )
    return settings.card_token_key.encode()


def card_tokens(card_numbers: Iterable[str | None], key: bytes) -> list[str | None]:
    """Token of each card number (None stays None)."""
    return [
        None if number is None else hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:TOKEN_HEX_CHARS]
        for number in card_numbers
    ]
