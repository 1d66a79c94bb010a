"""Standard Webhooks signatures, as OpenAI signs its webhooks and the SDK's `webhooks.unwrap`
checks them: HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with the base64-decoded
part of a `whsec_` secret, sent as `webhook-signature: v1,<base64>` (several, space-separated,
while an old secret is still honoured)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_hint(secret: str) -> str:
    return f"{PREFIX}...{secret[-4:]}"


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (each attempt is signed at its own time: the
    receiver refuses timestamps older than five minutes)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
        "user-agent": "ftapi-webhooks/1",
    }
