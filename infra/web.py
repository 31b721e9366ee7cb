"""Static web (agent console + customer widget): private S3 bucket behind CloudFront (OAC).

``web/`` is uploaded by a BucketDeployment (a CDK-provided Python Lambda with the AWS
CLI layer; no Docker needed at synth) and CloudFront is invalidated on change.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra import ROOT

LOG_EXPIRATION = Duration.days(90)


class Web(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, deploy_content: bool = True) -> None:
        super().__init__(scope, construct_id)

        # Receives S3 server access logs and CloudFront standard logs (which need ACLs).
        self.log_bucket = s3.Bucket(
            self,
            "LogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            lifecycle_rules=[s3.LifecycleRule(expiration=LOG_EXPIRATION)],
            removal_policy=RemovalPolicy.RETAIN,
        )
        Validations.of(self.log_bucket).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the access-log bucket itself; logging it into itself would loop.",
            )
        )

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="s3/web/",
            lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(30))],
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="kefu web console and widget",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                compress=True,
            ),
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=self.log_bucket,
            log_file_prefix="cloudfront/",
        )
        for rule, reason in (
            (
                "AwsSolutions-CFR1",
                "Customers and agents are worldwide; no country is blocked.",
            ),
            (
                "AwsSolutions-CFR2",
                "Static, public assets only (no API behind CloudFront); a WAF web ACL would add "
                "cost without protecting data.",
            ),
            (
                "AwsSolutions-CFR4",
                "No custom domain yet, so viewers get the default *.cloudfront.net certificate, "
                "whose TLS policy cannot be set; minimum_protocol_version TLSv1.2_2021 applies "
                "as soon as a certificate is attached.",
            ),
        ):
            Validations.of(self.distribution).acknowledge(Acknowledgment(id=rule, reason=reason))

        self.deployment = None
        if deploy_content:
            self.deployment = s3deploy.BucketDeployment(
                self,
                "Content",
                sources=[s3deploy.Source.asset(str(ROOT / "web"), exclude=["**/node_modules", "**/.DS_Store"])],
                destination_bucket=self.bucket,
                distribution=self.distribution,
                distribution_paths=["/*"],
                memory_limit=256,
                log_group=logs.LogGroup(self, "ContentDeploymentLogs", retention=logs.RetentionDays.ONE_MONTH),
            )
