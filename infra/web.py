"""Static web (agent console + customer widget): private S3 bucket behind CloudFront (OAC).

``web/`` is built at synth time (``kefu_local.webbuild``: asset names carry a content hash, references
are rewritten; .kefu/web-build/<hash>) and uploaded by two BucketDeployments (a CDK-provided Python
Lambda with the AWS CLI layer; no Docker needed at synth): the hashed ``assets/`` first, with
``Cache-Control: public, max-age=31536000, immutable`` and never pruned (a page still open in a browser
keeps finding the assets it references); then the pages, ``widget.js`` and ``asset-manifest.json``
with ``Cache-Control: no-cache``, pruned outside ``assets/``, and CloudFront is invalidated for those
files only.

The log bucket (S3 server access logs and CloudFront standard logs) keeps versions: a log
file overwritten or deleted stays recoverable for ``LOG_NONCURRENT_EXPIRATION``. It and the
web bucket stay on SSE-S3 (see the acknowledgments below and docs/security.md).

A custom domain is optional: context ``kefu:webDomainName`` plus
``kefu:webCertificateArn`` (an ACM certificate in us-east-1) attach it, and only then
does the minimum TLS policy (TLSv1.2_2021) apply: the default *.cloudfront.net
certificate has a fixed policy.
"""

from __future__ import annotations

import sys

from aws_cdk import Acknowledgment, DefaultStackSynthesizer, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from infra import ROOT

try:
    from kefu_local import webbuild
except ImportError:  # the checkout's package is not installed: the build module is standard library only
    sys.path.insert(0, str(ROOT / "local"))
    from kefu_local import webbuild

LOG_EXPIRATION = Duration.days(90)
LOG_NONCURRENT_EXPIRATION = Duration.days(30)


class Web(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, deploy_content: bool = True,
                 key: kms.IKey | None = None) -> None:
        """``key`` encrypts the content deployment's log group (the stack key)."""
        super().__init__(scope, construct_id)
        self.key = key

        # Receives S3 server access logs and CloudFront standard logs (which need ACLs).
        self.log_bucket = s3.Bucket(
            self,
            "LogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.OBJECT_WRITER,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(expiration=LOG_EXPIRATION, noncurrent_version_expiration=LOG_NONCURRENT_EXPIRATION),
                s3.LifecycleRule(expired_object_delete_marker=True),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        # no AwsSolutions-S1 / NIST S3BucketLoggingEnabled finding here: cdk-nag exempts a bucket others log to
        Validations.of(self.log_bucket).acknowledge(
            Acknowledgment(
                id="NIST.800.53.R5-S3DefaultEncryptionKMS",
                reason=(
                    "SSE-S3 on purpose: AWS's log delivery writes here (S3 server access logs, and CloudFront "
                    "standard logs through an object ACL); SSE-KMS would need key grants to those delivery services "
                    "that no test can check before a deployment, and a wrong one silently stops the logs. They hold "
                    "request metadata (addresses, object keys, status), no message content."
                ),
            ),
            Acknowledgment(
                id="NIST.800.53.R5-S3BucketReplicationEnabled",
                reason=(
                    "Access logs kept 90 days for investigations, versioned against overwrite and deletion; the "
                    "stack is single-region by design and a second-region copy would add a bucket, key and role."
                ),
            ),
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
        Validations.of(self.bucket).acknowledge(
            Acknowledgment(
                id="NIST.800.53.R5-S3DefaultEncryptionKMS",
                reason=(
                    "The console's and the widget's static files, which CloudFront serves to anyone: a customer "
                    "managed key protects nothing secret here and would add a KMS call per cache miss and a key "
                    "grant to CloudFront; SSE-S3 encrypts them at rest."
                ),
            ),
            Acknowledgment(
                id="NIST.800.53.R5-S3BucketReplicationEnabled",
                reason=(
                    "Built from web/ in the repository at every synth and uploaded by cdk deploy (versioned): a "
                    "lost object is restored by deploying again, not from a replica."
                ),
            ),
        )

        domain_name = self.node.try_get_context("kefu:webDomainName")
        certificate_arn = self.node.try_get_context("kefu:webCertificateArn")
        if bool(domain_name) != bool(certificate_arn):
            raise ValueError("set both kefu:webDomainName and kefu:webCertificateArn, or neither")
        custom_domain = {}
        if domain_name:
            custom_domain = {
                "domain_names": [domain_name],
                "certificate": acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn),
                "minimum_protocol_version": cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
            }

        origin = origins.S3BucketOrigin.with_origin_access_control(self.bucket)
        # The chat page is framed by the widget on customers' sites: no X-Frame-Options for it, and a CSP
        # frame-ancestors naming who may frame it (context kefu:widgetFrameAncestors, e.g.
        # "https://shop.example.com https://*.example.cn"; default: any site). The other pages (the agent
        # console) keep the managed security headers, whose X-Frame-Options SAMEORIGIN stops clickjacking.
        frame_ancestors = self.node.try_get_context("kefu:widgetFrameAncestors") or "*"
        widget_headers = cloudfront.ResponseHeadersPolicy(
            self,
            "WidgetHeaders",
            comment="kefu chat page: framed by the widget on customers' sites",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=f"frame-ancestors {frame_ancestors}", override=True),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.STRICT_ORIGIN_WHEN_CROSS_ORIGIN, override=True),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.days(365), include_subdomains=True, override=True),
            ),
        )
        behavior = {
            "origin": origin,
            "viewer_protocol_policy": cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            "cache_policy": cloudfront.CachePolicy.CACHING_OPTIMIZED,
            "compress": True,
        }
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="kefu web console and widget",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS, **behavior),
            additional_behaviors={
                "/customer.html": cloudfront.BehaviorOptions(response_headers_policy=widget_headers, **behavior),
            },
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            enable_logging=True,
            log_bucket=self.log_bucket,
            log_file_prefix="cloudfront/",
            **custom_domain,
        )
        acknowledgments = [
            (
                "AwsSolutions-CFR1",
                "Customers and agents are worldwide; no country is blocked.",
            ),
            (
                "AwsSolutions-CFR2",
                "Static, public assets only (no API behind CloudFront); a WAF web ACL would add "
                "cost without protecting data.",
            ),
        ]
        if not domain_name:
            acknowledgments.append(
                (
                    "AwsSolutions-CFR4",
                    "No custom domain configured, so viewers get the default *.cloudfront.net "
                    "certificate, whose TLS policy is fixed; set kefu:webDomainName and "
                    "kefu:webCertificateArn to enforce TLSv1.2_2021.",
                )
            )
        for rule, reason in acknowledgments:
            Validations.of(self.distribution).acknowledge(Acknowledgment(id=rule, reason=reason))

        self.deployment = None
        self.assets_deployment = None
        if deploy_content:
            self._deploy_content()

    def _deploy_content(self) -> None:
        deployment_logs = logs.LogGroup(
            self, "ContentDeploymentLogs", retention=logs.RetentionDays.ONE_MONTH, encryption_key=self.key
        )
        # Own role: the default one carries the AWS managed AWSLambdaBasicExecutionRole.
        role = iam.Role(
            self,
            "ContentDeploymentRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="kefu: BucketDeployment of web/ (CDK-provided Lambda)",
        )
        deployment_logs.grant_write(role)
        site, manifest = webbuild.snapshot(ROOT / "web", ROOT / ".kefu" / "web-build")
        common = {"destination_bucket": self.bucket, "memory_limit": 256, "role": role, "log_group": deployment_logs}
        # content-addressed names: immutable, and kept (not pruned) for pages loaded before a deploy
        if manifest.assets:
            self.assets_deployment = s3deploy.BucketDeployment(
                self,
                "Assets",
                sources=[s3deploy.Source.asset(str(site / webbuild.ASSETS_DIR))],
                destination_key_prefix=webbuild.ASSETS_DIR + "/",
                prune=False,
                cache_control=[s3deploy.CacheControl.from_string(webbuild.IMMUTABLE)],
                **common,
            )
        # pages, widget.js (its URL is embedded in customers' sites) and the manifest: revalidated every time
        stable = sorted(manifest.stable)
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Content",
            sources=[s3deploy.Source.asset(str(site), exclude=[webbuild.ASSETS_DIR, webbuild.STAMP])],
            exclude=[webbuild.ASSETS_DIR + "/*"],  # the sync neither uploads nor prunes the assets
            cache_control=[s3deploy.CacheControl.from_string(webbuild.NO_CACHE)],
            distribution=self.distribution,
            distribution_paths=["/"] + [f"/{name}" for name in stable],
            **common,
        )
        if self.assets_deployment is not None:
            self.deployment.node.add_dependency(self.assets_deployment)  # never a page before its assets
            # every BucketDeployment adds an AWS CLI layer, but the handler (a singleton) uses the first
            # one's: drop the unused copy (one resource less; CloudFormation's limit is 500 per stack)
            self.deployment.node.try_remove_child("AwsCliLayer")
        qualifier = (
            self.node.try_get_context("@aws-cdk/core:bootstrapQualifier") or DefaultStackSynthesizer.DEFAULT_QUALIFIER
        )
        asset_bucket = f"arn:<AWS::Partition>:s3:::cdk-{qualifier}-assets-<AWS::AccountId>-<AWS::Region>/*"
        web_bucket = f"<{Stack.of(self).get_logical_id(self.bucket.node.default_child)}.Arn>/*"
        for finding, reason in (
            ("Action::s3:GetBucket*", "aws-cdk-lib's BucketDeployment grant (read the staged web/ asset)."),
            ("Action::s3:GetObject*", "aws-cdk-lib's BucketDeployment grant (read the asset, write the web bucket)."),
            ("Action::s3:List*", "aws-cdk-lib's BucketDeployment grant (aws s3 sync lists both buckets)."),
            ("Action::s3:Abort*", "aws-cdk-lib's BucketDeployment grant (multipart uploads into the web bucket)."),
            ("Action::s3:DeleteObject*", "aws-cdk-lib's BucketDeployment grant (prune files removed from web/)."),
            (
                f"Resource::{asset_bucket}",
                "The CDK bootstrap asset bucket: asset object keys are content hashes known only at deploy time.",
            ),
            (
                f"Resource::{web_bucket}",
                "Every object of the web bucket: the deployment syncs the whole web/ folder.",
            ),
            (
                "Resource::*",
                "cloudfront:CreateInvalidation/GetInvalidation (invalidate after upload) are granted on * "
                "by aws-cdk-lib's BucketDeployment.",
            ),
        ):
            Validations.of(role).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason))
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="NIST.800.53.R5-IAMNoInlinePolicy",
                reason="aws-cdk-lib's BucketDeployment adds its grants to the role's own (inline) default policy.",
            )
        )
        provider = Stack.of(self).node.try_find_child(
            next(c.node.id for c in Stack.of(self).node.children if c.node.id.startswith("Custom::CDKBucketDeployment"))
        )
        Validations.of(provider).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason="The BucketDeployment handler and its runtime are provided and pinned by aws-cdk-lib.",
            ),
            Acknowledgment(
                id="NIST.800.53.R5-LambdaDLQ",
                reason=(
                    "aws-cdk-lib's BucketDeployment handler runs only as a CloudFormation custom resource during "
                    "a deployment: a failure fails and rolls back the deployment, where it is seen; nothing to replay."
                ),
            ),
            Acknowledgment(
                id="NIST.800.53.R5-LambdaConcurrency",
                reason=(
                    "aws-cdk-lib's BucketDeployment handler runs once per BucketDeployment during a deployment; "
                    "a reservation would only take capacity from the account's pool."
                ),
            ),
            Acknowledgment(
                id="NIST.800.53.R5-LambdaInsideVPC",
                reason=(
                    "aws-cdk-lib's BucketDeployment handler copies from the CDK asset bucket to the web bucket and "
                    "invalidates CloudFront, through their public endpoints with IAM; the stack has no VPC."
                ),
            ),
        )
