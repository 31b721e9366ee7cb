"""S3 buckets, built from ``kefu.schema.BUCKETS`` (e.g. the trained answering models).

Each bucket is private (all public access blocked, ACLs disabled), refuses requests
without TLS, encrypts with the stack's customer-managed key (SSE-KMS, with an S3 Bucket
Key so that a burst of reads does not become a burst of KMS calls), keeps versions (an
overwritten or deleted object stays recoverable for ``NONCURRENT_EXPIRATION``), logs
requests to the stack's access-log bucket (web.py) and is retained when the stack is
deleted, like the tables, the domain and the key.

Who may read or write which bucket is granted in ``functions.py``, from the schema.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct
from kefu import schema

NONCURRENT_EXPIRATION = Duration.days(30)
INCOMPLETE_UPLOAD_EXPIRATION = Duration.days(7)


def check_references() -> None:
    """Every ``reads_buckets`` / ``writes_buckets`` of a function names a bucket of ``schema.BUCKETS``."""
    for spec in schema.FUNCTIONS:
        for bucket_id in (*spec.reads_buckets, *spec.writes_buckets):
            if bucket_id not in schema.BUCKETS:
                raise ValueError(f"{spec.name} names bucket {bucket_id!r}, which is not in schema.BUCKETS")


def access_log_prefix(spec: schema.Bucket) -> str:
    return f"s3/{spec.id.lower()}/"


class Storage(Construct):
    """``buckets`` maps the schema bucket id (e.g. "Models") to the Bucket."""

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey, log_bucket: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        check_references()
        self.buckets: dict[str, s3.Bucket] = {}

        for spec in schema.BUCKETS.values():
            self.buckets[spec.id] = s3.Bucket(
                self,
                spec.id,
                encryption=s3.BucketEncryption.KMS,
                encryption_key=key,
                bucket_key_enabled=True,
                enforce_ssl=True,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                versioned=True,
                lifecycle_rules=[
                    s3.LifecycleRule(
                        noncurrent_version_expiration=NONCURRENT_EXPIRATION,
                        abort_incomplete_multipart_upload_after=INCOMPLETE_UPLOAD_EXPIRATION,
                    )
                ],
                server_access_logs_bucket=log_bucket,
                server_access_logs_prefix=access_log_prefix(spec),
                removal_policy=RemovalPolicy.RETAIN,
            )
