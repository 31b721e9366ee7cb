"""kefu.ports.PiiVault on KMS: the values masked out of a message, encrypted under the PII key with the
workspace and conversation as encryption context (KMS refuses to decrypt them for any other pair, and CloudTrail
records every decryption). KMS encrypts at most 4,096 bytes a call, so longer lists go in several pieces."""

from __future__ import annotations

import base64
import json
import os

import boto3
from botocore.config import Config

from .. import schema

_MAX_PLAINTEXT = 4096  # KMS Encrypt's limit
# a customer waits on the seal: fail fast (the message is refused as busy and resent) instead of botocore's
# default of 5 attempts with backoff of up to 15 s
_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=3)


class KmsVault:
    def __init__(self, key_id: str | None = None):
        self.key_id = key_id or os.environ[schema.ENV_PII_KEY_ID]
        self._kms = boto3.client("kms", config=_CONFIG)

    def seal(self, workspace: str, conversation_id: str, values: list[str]) -> str:
        plain = json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()
        pieces = [plain[i : i + _MAX_PLAINTEXT] for i in range(0, len(plain), _MAX_PLAINTEXT)]
        return ".".join(
            base64.b64encode(self._kms.encrypt(KeyId=self.key_id, Plaintext=piece,
                                               EncryptionContext=_context(workspace, conversation_id))
                             ["CiphertextBlob"]).decode()
            for piece in pieces
        )

    def open(self, workspace: str, conversation_id: str, sealed: str) -> list[str]:
        plain = b"".join(
            self._kms.decrypt(CiphertextBlob=base64.b64decode(piece, validate=True),
                              EncryptionContext=_context(workspace, conversation_id))["Plaintext"]
            for piece in sealed.split(".")
        )
        values = json.loads(plain)
        if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
            raise ValueError("sealed values are not a list of strings")
        return values


def _context(workspace: str, conversation_id: str) -> dict[str, str]:
    return dict(zip(schema.PII_CONTEXT_KEYS, (workspace, conversation_id)))
