"""cfn-lint on every synthesized template (the parent stack's and each nested stack's): no errors,
no warnings.

Ignored: W3005 only ("dependency already enforced by a GetAtt"): aws-cdk-lib adds an
explicit DependsOn from each Lambda function / state machine to its role even though
the Role GetAtt already orders them; harmless and not ours to change.
"""

from __future__ import annotations

from cfnlint.api import lint
from cfnlint.config import ManualArgs

IGNORED_CHECKS = ["W3005"]
# A region we deploy to in practice, one in Europe, one in Asia (OpenSearch, HTTP/3, ...).
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-1"]


def test_cfn_lint_is_clean(synthesized):
    templates = synthesized.templates()
    assert len(templates) >= 2  # the parent and the monitoring's nested stack
    findings = []
    for stack_path, template_path in templates.items():
        matches = lint(
            template_path.read_text(),
            config=ManualArgs(regions=REGIONS, ignore_checks=IGNORED_CHECKS),
        )
        findings += [f"{stack_path}: {m.rule.id} {m.message} (line {m.linenumber})" for m in matches]
    assert findings == []
