"""A minimal but real OpenSearch domain for the knowledge base.

One small data node, encrypted at rest with the stack key, node-to-node encryption,
HTTPS only with TLS 1.2, slow and application logs in CloudWatch (log groups on the stack key). Access is IAM only
(SigV4), nothing anonymous: the domain's access policy (``trust``) names exactly the
execution roles of the functions whose schema entry has ``search``, each with the HTTP
methods of its level (``SEARCH_ACTIONS``); ``functions.py`` grants the same actions in
each role's own policy.

The access policy and the log resource policy are written as plain CloudFormation
instead of through the L2's custom resources (an extra Node.js Lambda with wildcard
permissions); that needs the domain name up front, derived from the stack name.
"""

from __future__ import annotations

import re

from aws_cdk import Acknowledgment, Aws, RemovalPolicy, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_opensearchservice as opensearch
from constructs import Construct

ENGINE_VERSION = opensearch.EngineVersion.OPENSEARCH_3_7  # the newest in aws-cdk-lib 2.275
DEFAULT_INSTANCE_TYPE = "t3.small.search"
VOLUME_GIB = 10

# HTTP methods per ``schema.Function.search`` level: searching is GET/HEAD and POST
# (``_search``, ``_msearch``); writing adds PUT (create the index, put a document) and DELETE.
SEARCH_READ_ACTIONS = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost"]
SEARCH_ACTIONS = {
    "read": SEARCH_READ_ACTIONS,
    "write": SEARCH_READ_ACTIONS + ["es:ESHttpPut", "es:ESHttpDelete"],
}


def domain_name_for(stack_name: str) -> str:
    """3-28 chars, lowercase letters, digits and hyphens, starting with a letter."""
    base = re.sub(r"[^a-z0-9-]", "-", stack_name.lower()).strip("-") or "kefu"
    if not base[0].isalpha():
        base = "k" + base
    return f"{base[:21].rstrip('-')}-kb"


class Search(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        instance_type = self.node.try_get_context("kefu:searchInstanceType") or DEFAULT_INSTANCE_TYPE
        self.domain_name = domain_name_for(stack.stack_name)

        month = logs.RetentionDays.ONE_MONTH
        self.slow_search_logs = logs.LogGroup(self, "SlowSearchLogs", retention=month, encryption_key=key)
        self.slow_index_logs = logs.LogGroup(self, "SlowIndexLogs", retention=month, encryption_key=key)
        self.app_logs = logs.LogGroup(self, "AppLogs", retention=month, encryption_key=key)
        log_groups = [self.slow_search_logs, self.slow_index_logs, self.app_logs]

        log_policy = logs.ResourcePolicy(
            self,
            "LogsPolicy",
            policy_statements=[
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal("es.amazonaws.com")],
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[lg.log_group_arn for lg in log_groups],
                    conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
                )
            ],
        )

        self.domain = opensearch.Domain(
            self,
            "Domain",
            domain_name=self.domain_name,
            version=ENGINE_VERSION,
            capacity=opensearch.CapacityConfig(
                data_nodes=1,
                data_node_instance_type=instance_type,
                multi_az_with_standby_enabled=False,
            ),
            ebs=opensearch.EbsOptions(volume_size=VOLUME_GIB, volume_type=ec2.EbsDeviceVolumeType.GP3),
            zone_awareness=opensearch.ZoneAwarenessConfig(enabled=False),
            encryption_at_rest=opensearch.EncryptionAtRestOptions(enabled=True, kms_key=key),
            node_to_node_encryption=True,
            enforce_https=True,
            tls_security_policy=opensearch.TLSSecurityPolicy.TLS_1_2,
            logging=opensearch.LoggingOptions(
                slow_search_log_enabled=True,
                slow_search_log_group=self.slow_search_logs,
                slow_index_log_enabled=True,
                slow_index_log_group=self.slow_index_logs,
                app_log_enabled=True,
                app_log_group=self.app_logs,
            ),
            suppress_logs_resource_policy=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.domain.node.add_dependency(log_policy)

        for rule, reason in (
            (
                "AwsSolutions-OS1",
                "Not in a VPC: the functions run outside any VPC (no NAT cost on the message path) "
                "and reach the domain over HTTPS with SigV4; the access policy only trusts the "
                "execution roles of the functions with search access.",
            ),
            (
                "NIST.800.53.R5-OpenSearchInVPCOnly",
                "Not in a VPC: the functions that search run outside any VPC (the stack has none) and sign every "
                "request (SigV4); the domain's access policy names only their execution roles, and it enforces "
                "HTTPS with TLS 1.2, node-to-node encryption and KMS at rest.",
            ),
            (
                "AwsSolutions-OS3",
                "Callers are Lambda functions without fixed IP addresses; access is restricted by "
                "IAM (SigV4-signed requests from the functions' roles) instead of an IP allow list.",
            ),
            (
                "AwsSolutions-OS4",
                "One data node holds a small knowledge-base index; dedicated master nodes would "
                "triple the cost. Revisit when the domain grows past one node.",
            ),
            (
                "AwsSolutions-OS7",
                "Single node, so no zone awareness; the index is rebuilt from the DynamoDB source "
                "of truth after a loss.",
            ),
        ):
            Validations.of(self.domain).acknowledge(Acknowledgment(id=rule, reason=reason))

    def trust(self, roles: dict[str, list[iam.IRole]]) -> None:
        """The access policy: the roles of each level (``"read"`` / ``"write"``) may send the
        HTTP methods of that level to the domain's paths, and no one else is named."""
        unknown = set(roles) - set(SEARCH_ACTIONS)
        if unknown:
            raise ValueError(f"unknown search access {sorted(unknown)}: use one of {sorted(SEARCH_ACTIONS)}")
        statements = [
            {
                "Sid": f"Search{level.capitalize()}",
                "Effect": "Allow",
                "Principal": {"AWS": [role.role_arn for role in level_roles]},
                "Action": SEARCH_ACTIONS[level],
                # Not domain_arn: the domain's own attribute would be a circular reference.
                "Resource": Stack.of(self).format_arn(
                    service="es", resource="domain", resource_name=f"{self.domain_name}/*"
                ),
            }
            for level, level_roles in sorted(roles.items())
            if level_roles
        ]
        cfn_domain: opensearch.CfnDomain = self.domain.node.default_child
        # No statement, no policy: then nothing but an identity policy could grant access.
        cfn_domain.access_policies = {"Version": "2012-10-17", "Statement": statements} if statements else None
