#!/usr/bin/env python3
"""CDK entry point: ``npx cdk synth`` / ``npx cdk deploy`` (cdk.json runs this file)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aws_cdk import App, Environment, Validations  # noqa: E402
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks  # noqa: E402

from infra.stack import KefuStack  # noqa: E402

STACK_NAME = "Kefu"


def build(app: App) -> KefuStack:
    """The stack plus the cdk-nag AwsSolutions and NIST 800-53 rev. 5 packs (validation plugins in cdk-nag 3.x).

    Any finding of either pack that is not acknowledged (``Validations.of(c).acknowledge``) fails synth.
    """
    stack_name = app.node.try_get_context("kefu:stackName") or STACK_NAME
    account = os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = os.environ.get("CDK_DEFAULT_REGION")
    env = Environment(account=account, region=region) if account and region else None
    stack = KefuStack(app, stack_name, env=env, description="kefu: serverless customer service")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True), NIST80053R5Checks(app, verbose=True))
    return stack


if __name__ == "__main__":
    application = App()
    build(application)
    application.synth()
