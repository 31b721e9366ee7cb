"""The token signing key (Secrets Manager), encrypted with the stack's KMS key."""

from __future__ import annotations

from aws_cdk import Validations, Acknowledgment
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class Secrets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)

        self.jwt_signing_key = secretsmanager.Secret(
            self,
            "JwtSigningKey",
            description="kefu: HMAC key that signs visitor and agent tokens",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64,
                exclude_punctuation=True,
                include_space=False,
            ),
        )
        rotation = (
            "The JWT signing key is rotated by an operator, not on a schedule: a blind "
            "rotation would invalidate every live visitor and agent token at once "
            "(verification accepts a single key)."
        )
        Validations.of(self.jwt_signing_key).acknowledge(
            Acknowledgment(id="AwsSolutions-SMG4", reason=rotation),
            Acknowledgment(id="NIST.800.53.R5-SecretsManagerRotationEnabled", reason=rotation),
        )
