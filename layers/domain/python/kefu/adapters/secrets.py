"""The token signing key, from Secrets Manager (the local stack runs Secrets Manager too)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parameters import get_secret


def signing_key(secret_id: str) -> str:
    # cached for five minutes per warm container, so a rotation reaches every function quickly
    value = get_secret(secret_id, max_age=300)
    if not isinstance(value, str) or len(value) < 32:
        raise RuntimeError("the signing key secret must be a string of at least 32 characters")
    return value
