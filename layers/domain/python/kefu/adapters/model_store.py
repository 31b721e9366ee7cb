"""Trained answering models as S3 objects ("models/{ws}/{version}.npz")."""

from __future__ import annotations

import os

from .. import schema


class S3ModelStore:
    def __init__(self, bucket: str | None = None, s3=None):
        import boto3

        self.bucket = bucket or os.environ[schema.MODELS.env_var]
        if s3 is None:
            from botocore.config import Config

            # path-style when an endpoint is configured (the local stack's moto server on an IP address)
            local = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}) if local else None)
        self.s3 = s3

    @staticmethod
    def key(workspace: str, version: str) -> str:
        return f"models/{workspace}/{version}.npz"

    def save(self, workspace: str, version: str, blob: bytes) -> str:
        key = self.key(workspace, version)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=blob, ContentType="application/octet-stream")
        return key

    def load(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
