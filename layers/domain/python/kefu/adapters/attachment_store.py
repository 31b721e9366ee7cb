"""Attachments as S3 objects (kefu.attachments.AttachmentStore): presigned POST and GET, HeadObject.

Presigned requests are signed with the function's own credentials, so the api function's role needs
s3:PutObject (uploads) and s3:GetObject (downloads) on the bucket's objects, and the bucket key's
GenerateDataKey / Decrypt through S3 (SSE-KMS); ws_message needs s3:GetObject for HeadObject.
"""

from __future__ import annotations

import os

from .. import schema
from ..attachments import StoredObject


class S3AttachmentStore:
    def __init__(self, bucket: str | None = None, s3=None):
        self.bucket = bucket or os.environ[schema.ATTACHMENTS.env_var]
        if s3 is None:
            import boto3
            from botocore.config import Config

            # path-style when an endpoint is configured (the local stack's moto server on an IP address);
            # SigV4 always (SSE-KMS objects refuse anything else)
            local = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            s3 = boto3.client("s3", config=Config(signature_version="s3v4",
                                                  s3={"addressing_style": "path" if local else "virtual"}))
        self.s3 = s3

    def upload_ticket(self, key: str, content_type: str, max_bytes: int, expires_s: int) -> dict:
        # boto3 adds the bucket and the exact key to the policy's conditions
        post = self.s3.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
            ExpiresIn=expires_s,
        )
        return {"url": post["url"], "fields": post["fields"]}

    def download_url(self, key: str, content_type: str, disposition: str, expires_s: int) -> str:
        return self.s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type,
                    "ResponseContentDisposition": disposition},
            ExpiresIn=expires_s,
        )

    def head(self, key: str) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return StoredObject(size=int(head["ContentLength"]), content_type=head.get("ContentType") or "")
