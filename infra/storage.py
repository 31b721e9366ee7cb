"""S3 buckets, built from ``kefu.schema.BUCKETS`` (e.g. the trained answering models).

Each bucket is private (all public access blocked, ACLs disabled), refuses requests
without TLS, encrypts with the stack's customer-managed key (SSE-KMS, with an S3 Bucket
Key so that a burst of reads does not become a burst of KMS calls), keeps versions (an
overwritten or deleted object stays recoverable for ``NONCURRENT_EXPIRATION``), logs
requests to the stack's access-log bucket (web.py) and is retained when the stack is
deleted, like the tables, the domain and the key.

Who may read or write which bucket is granted in ``functions.py``, from the schema.

A bucket browsers talk to directly (``browser_access``: the message attachments, uploaded with a
presigned POST and downloaded with a presigned GET) gets a CORS configuration for the web origins:
the CloudFront distribution (and ``kefu:webDomainName`` when set) plus the origins of sites embedding
the widget, ``kefu:corsOrigins`` (the same list as the REST API's; ``"*"`` allows any origin: the
presigned policy, not CORS, is what limits an upload). Objects of the attachments bucket are kept until
``kefu:attachmentRetentionDays`` (context, days) is set.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct
from kefu import schema

NONCURRENT_EXPIRATION = Duration.days(30)
INCOMPLETE_UPLOAD_EXPIRATION = Duration.days(7)
CORS_MAX_AGE_S = 3600
# Why each bucket has no cross-region replica (cdk-nag NIST.800.53.R5-S3BucketReplicationEnabled):
# a bucket added to schema.BUCKETS needs its reason here (the synth fails without one).
NO_REPLICATION_REASONS = {
    "Models": (
        "Derived data: kb_indexer trains every model again from the Knowledge table (point-in-time recovery), "
        "and versions keep an overwritten model 30 days; the stack is single-region by design."
    ),
    "Attachments": (
        "Customers' files: a replica in another region would double them and would have to follow each "
        "workspace's retention and every customer's erasure too; versions keep a deleted or overwritten object "
        "30 days, and the stack is single-region by design."
    ),
}


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

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey, log_bucket: s3.IBucket,
                 web_origins: list[str] | None = None) -> None:
        super().__init__(scope, construct_id)
        check_references()
        self.buckets: dict[str, s3.Bucket] = {}
        self.web_origins = self._web_origins() if web_origins is None else list(web_origins)

        for spec in schema.BUCKETS.values():
            browser = spec.browser_access
            retention = self.node.try_get_context("kefu:attachmentRetentionDays") if browser else None
            if spec.id not in NO_REPLICATION_REASONS:
                raise ValueError(f"bucket {spec.id}: add why it has no replica to storage.NO_REPLICATION_REASONS")
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
                        expiration=Duration.days(int(retention)) if retention else None,
                    )
                ],
                cors=[self._cors()] if browser else None,
                server_access_logs_bucket=log_bucket,
                server_access_logs_prefix=access_log_prefix(spec),
                removal_policy=RemovalPolicy.RETAIN,
            )
            Validations.of(self.buckets[spec.id]).acknowledge(
                Acknowledgment(id="NIST.800.53.R5-S3BucketReplicationEnabled", reason=NO_REPLICATION_REASONS[spec.id])
            )

    def _web_origins(self) -> list[str]:
        """https:// of the stack's CloudFront distribution (KefuStack builds ``web`` before the storage) and
        of its custom domain, then the sites that embed the widget (``kefu:corsOrigins``)."""
        origins: list[str] = []
        web = getattr(Stack.of(self), "web", None)
        if web is not None:
            origins.append(f"https://{web.distribution.distribution_domain_name}")
        domain = self.node.try_get_context("kefu:webDomainName")
        if domain:
            origins.append(f"https://{domain}")
        extra = self.node.try_get_context("kefu:corsOrigins") or []
        origins.extend(o for o in ([extra] if isinstance(extra, str) else extra) if o not in origins)
        return origins

    def _cors(self) -> s3.CorsRule:
        """Presigned POST (upload) and GET (download) from the web origins; no credentials, no custom headers."""
        if not self.web_origins:
            raise ValueError("a bucket with browser access needs web origins (the Web construct or kefu:corsOrigins)")
        return s3.CorsRule(
            allowed_methods=[s3.HttpMethods.POST, s3.HttpMethods.GET, s3.HttpMethods.HEAD],
            allowed_origins=self.web_origins,
            allowed_headers=["Content-Type", "Range"],
            exposed_headers=["ETag", "Content-Length", "Content-Type", "Content-Disposition"],
            max_age=CORS_MAX_AGE_S,
        )
