"""CDK assertions on the synthesized kefu stack, derived from kefu.schema."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk import aws_opensearchservice as opensearch
from aws_cdk.assertions import Match
from kefu import schema

from infra.functions import STREAM_BATCH_SIZE, STREAM_MAX_BATCHING_WINDOW_S
from infra.layers import dependencies_asset_hash
from infra.queues import VISIBILITY_TIMEOUT_FACTOR
from infra.search import SEARCH_ACTIONS

TABLE_WRITE_ACTIONS = {
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
    "dynamodb:TransactWriteItems",
}
KEY_TYPES = {"S": "S", "N": "N", "B": "B"}
SEARCH_READ = {"es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost"}
SEARCH_WRITE = SEARCH_READ | {"es:ESHttpPut", "es:ESHttpDelete"}


# ---------------------------------------------------------------- helpers


def refs(value) -> set[str]:
    """Logical ids referenced (Ref / Fn::GetAtt) anywhere inside a template value."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str) and not value["Ref"].startswith("AWS::"):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for item in value.values():
            found |= refs(item)
    elif isinstance(value, list):
        for item in value:
            found |= refs(item)
    return found


def _joined(value) -> str:
    """A template string value with its Fn::Join parts concatenated (references left out)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_joined(p) for p in parts)
    return ""


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def ids(synthesized):
    """Logical ids of the main resources, looked up through the construct tree."""
    stack = synthesized.stack
    return {
        "tables": {tid: synthesized.logical_id(t) for tid, t in stack.data.tables.items()},
        "key": synthesized.logical_id(stack.data.key),
        "pii_key": synthesized.logical_id(stack.data.pii_key),
        "functions": {n: synthesized.logical_id(f) for n, f in stack.functions.functions.items()},
        "roles": {n: synthesized.logical_id(r) for n, r in stack.functions.roles.items()},
        "layers": {synthesized.logical_id(stack.layers.domain), synthesized.logical_id(stack.layers.dependencies)},
        "secret": synthesized.logical_id(stack.secrets.jwt_signing_key),
        "ws_api": synthesized.logical_id(stack.realtime.api),
        "topic": synthesized.logical_id(stack.monitoring.topic),
        "queues": {qid: synthesized.logical_id(q) for qid, q in stack.queues.queues.items()},
        "queue_dlqs": {qid: synthesized.logical_id(q) for qid, q in stack.queues.dead_letter_queues.items()},
        "stream_dlqs": {n: synthesized.logical_id(q) for n, q in stack.functions.dead_letter_queues.items()},
        "buckets": {bid: synthesized.logical_id(b) for bid, b in stack.storage.buckets.items()},
        "log_bucket": synthesized.logical_id(stack.web.log_bucket),
        "domain": synthesized.logical_id(stack.search.domain),
        "escalation": synthesized.logical_id(stack.escalation.state_machine),
        "alert_topic": synthesized.logical_id(stack.escalation.alert_topic),
    }


@pytest.fixture(scope="module")
def role_statements(synthesized, ids):
    """Every IAM statement attached to each function role (inline policies included)."""
    by_role: dict[str, list[dict]] = {name: [] for name in ids["roles"]}
    role_names = {logical: name for name, logical in ids["roles"].items()}
    for policy in synthesized.of_type("AWS::IAM::Policy").values():
        for role_ref in policy["Properties"].get("Roles", []):
            name = role_names.get(role_ref.get("Ref"))
            if name:
                by_role[name].extend(as_list(policy["Properties"]["PolicyDocument"]["Statement"]))
    for logical, name in role_names.items():
        for inline in synthesized.resources[logical]["Properties"].get("Policies", []):
            by_role[name].extend(as_list(inline["PolicyDocument"]["Statement"]))
    return by_role


def actions_of(statements: list[dict]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in as_list(s["Action"])}


# ---------------------------------------------------------------- data


def test_keys_are_customer_managed_and_rotated(synthesized, ids):
    keys = synthesized.of_type("AWS::KMS::Key")
    assert set(keys) == {ids["key"], ids["pii_key"]}  # the stack's key; personal data sealed out of messages
    assert all(key["Properties"]["EnableKeyRotation"] is True for key in keys.values())


def test_only_functions_that_mask_use_the_pii_key_and_only_the_api_decrypts(role_statements, ids, synthesized):
    context = {"StringLike": {f"kms:EncryptionContext:{name}": "*" for name in schema.PII_CONTEXT_KEYS}}
    for spec in schema.FUNCTIONS:
        env = synthesized.resources[ids["functions"][spec.name]]["Properties"]["Environment"]["Variables"]
        on_key = [s for s in role_statements[spec.name] if ids["pii_key"] in json.dumps(s.get("Resource"))]
        if spec.pii is None:
            assert on_key == [] and schema.ENV_PII_KEY_ID not in env, spec.name
            continue
        assert refs(env[schema.ENV_PII_KEY_ID]) == {ids["pii_key"]}, spec.name
        (statement,) = on_key
        assert statement["Condition"] == context and refs(statement["Resource"]) == {ids["pii_key"]}
        expected = {"kms:Encrypt"} | ({"kms:Decrypt"} if spec.pii == "open" else set())
        assert set(as_list(statement["Action"])) == expected, spec.name
    assert {s.name: s.pii for s in schema.FUNCTIONS if s.pii} == {"ws_message": "seal", "api": "open"}


def test_one_table_per_schema_entry(synthesized):
    assert len(synthesized.of_type("AWS::DynamoDB::Table")) == len(schema.TABLES)


@pytest.mark.parametrize("spec", list(schema.TABLES.values()), ids=lambda t: t.id)
def test_table_matches_schema(synthesized, ids, spec):
    props = synthesized.resources[ids["tables"][spec.id]]["Properties"]
    expected_keys = [{"AttributeName": spec.partition_key.name, "KeyType": "HASH"}]
    if spec.sort_key:
        expected_keys.append({"AttributeName": spec.sort_key.name, "KeyType": "RANGE"})
    assert props["KeySchema"] == expected_keys
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["SSESpecification"]["SSEType"] == "KMS"
    assert refs(props["SSESpecification"]["KMSMasterKeyId"]) == {ids["key"]}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}

    if spec.ttl_attribute:
        assert props["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in props
    if spec.stream:
        assert props["StreamSpecification"] == {"StreamViewType": spec.stream}
    else:
        assert "StreamSpecification" not in props

    attribute_types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    gsis = {g["IndexName"]: g for g in props.get("GlobalSecondaryIndexes", [])}
    assert set(gsis) == {i.name for i in spec.indexes}
    for index in spec.indexes:
        gsi = gsis[index.name]
        keys = [{"AttributeName": index.partition_key.name, "KeyType": "HASH"}]
        if index.sort_key:
            keys.append({"AttributeName": index.sort_key.name, "KeyType": "RANGE"})
        assert gsi["KeySchema"] == keys
        assert gsi["Projection"] == {"ProjectionType": "ALL"}
        for key in filter(None, (index.partition_key, index.sort_key)):
            assert attribute_types[key.name] == KEY_TYPES[key.type]


def test_secret_is_generated_and_encrypted_with_the_key(synthesized, ids):
    props = synthesized.resources[ids["secret"]]["Properties"]
    assert "GenerateSecretString" in props
    assert refs(props["KmsKeyId"]) == {ids["key"]}


# ---------------------------------------------------------------- functions and layers


def test_two_layers_for_python313_arm64(synthesized, ids):
    for logical in ids["layers"]:
        props = synthesized.resources[logical]["Properties"]
        assert props["CompatibleRuntimes"] == ["python3.13"]
        assert props["CompatibleArchitectures"] == ["arm64"]


def test_one_function_per_schema_entry(synthesized, ids):
    kefu_functions = {
        k
        for k, v in synthesized.of_type("AWS::Lambda::Function").items()
        if v["Properties"].get("Handler") == "handler.handler"
    }
    assert kefu_functions == set(ids["functions"].values())
    assert set(ids["functions"]) == {f.name for f in schema.FUNCTIONS}


@pytest.mark.parametrize("spec", schema.FUNCTIONS, ids=lambda f: f.name)
def test_function_matches_schema(synthesized, ids, spec):
    resource = synthesized.resources[ids["functions"][spec.name]]
    props = resource["Properties"]
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["Handler"] == "handler.handler"
    assert props["MemorySize"] == spec.memory_mb
    assert props["Timeout"] == spec.timeout_s
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert {layer["Ref"] for layer in props["Layers"]} == ids["layers"]
    assert refs(props["Role"]) == {ids["roles"][spec.name]}

    env = props["Environment"]["Variables"]
    expected = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_NAMESPACE"}
    for table_id in set(spec.reads) | set(spec.writes) | set(spec.appends) | set(spec.queries):
        var = schema.TABLES[table_id].env_var
        expected.add(var)
        assert env[var] == {"Ref": ids["tables"][table_id]}
    if spec.needs_secret:
        expected.add(schema.ENV_JWT_SECRET_ID)
        assert env[schema.ENV_JWT_SECRET_ID] == {"Ref": ids["secret"]}
    if spec.manage_connections:
        expected.add(schema.ENV_WS_CALLBACK_URL)
        callback = json.dumps(env[schema.ENV_WS_CALLBACK_URL])
        assert ids["ws_api"] in callback and f"/{schema.WS_STAGE}" in callback and "https://" in callback
    for queue_id in spec.sends_to:
        var = schema.QUEUES[queue_id].env_var
        expected.add(var)
        assert env[var] == {"Ref": ids["queues"][queue_id]}  # Ref of an SQS queue is its URL
    for bucket_id in set(spec.reads_buckets) | set(spec.writes_buckets):
        var = schema.BUCKETS[bucket_id].env_var
        expected.add(var)
        assert env[var] == {"Ref": ids["buckets"][bucket_id]}  # Ref of a bucket is its name
    if spec.search:
        expected |= {schema.ENV_OPENSEARCH_URL, schema.ENV_OPENSEARCH_SIGV4}
        assert env[schema.ENV_OPENSEARCH_URL] == {
            "Fn::Join": ["", ["https://", {"Fn::GetAtt": [ids["domain"], "DomainEndpoint"]}]]
        }
        assert env[schema.ENV_OPENSEARCH_SIGV4] == "1"
    if spec.issues_api_keys:
        expected.add(schema.ENV_USAGE_PLAN_NAME)
    if spec.escalations:
        expected.add(schema.ENV_ESCALATION_ARN)
        assert env[schema.ENV_ESCALATION_ARN] == {"Ref": ids["escalation"]}  # Ref of a state machine is its ARN
    if spec.pii:
        expected.add(schema.ENV_PII_KEY_ID)  # its grant: test_only_functions_that_mask_use_the_pii_key...
    expected |= set(spec.extra_env)
    assert set(env) == expected
    assert env["POWERTOOLS_SERVICE_NAME"] == "kefu"


def test_function_code_assets_come_from_functions_folders(synthesized, ids):
    assets = json.loads((synthesized.outdir / f"{synthesized.stack.artifact_id}.assets.json").read_text())["files"]
    for name, logical in ids["functions"].items():
        s3_key = synthesized.resources[logical]["Properties"]["Code"]["S3Key"]
        asset = assets[s3_key.removesuffix(".zip")]
        staged = synthesized.outdir / asset["source"]["path"]
        assert (staged / "handler.py").exists(), f"{name}: {staged} has no handler.py"


def test_function_log_groups_have_retention(synthesized, ids):
    for name, logical in ids["functions"].items():
        log_group = synthesized.resources[logical]["Properties"]["LoggingConfig"]["LogGroup"]
        group = synthesized.resources[log_group["Ref"]]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == 30, name


def test_every_log_group_has_retention(synthesized):
    for logical, group in synthesized.of_type("AWS::Logs::LogGroup").items():
        assert group["Properties"].get("RetentionInDays"), logical


def test_every_log_group_is_encrypted_with_the_stack_key(synthesized, ids):
    groups = synthesized.of_type("AWS::Logs::LogGroup")
    assert len(groups) >= len(schema.FUNCTIONS) + 6  # the functions', both APIs', OpenSearch's, ..., the WAF log
    for logical, group in groups.items():
        assert refs(group["Properties"].get("KmsKeyId")) == {ids["key"]}, logical


def test_the_key_lets_cloudwatch_logs_use_it_for_this_accounts_log_groups_only(synthesized, ids):
    statements = synthesized.resources[ids["key"]]["Properties"]["KeyPolicy"]["Statement"]
    (statement,) = [s for s in statements if "logs." in json.dumps(s.get("Principal"))]
    assert _joined(statement["Principal"]["Service"]) == "logs..amazonaws.com"  # logs.<region>.amazonaws.com
    assert not any("*" in action for action in as_list(statement["Action"]))
    assert {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"} <= set(as_list(statement["Action"]))
    (arn,) = statement["Condition"]["ArnLike"].values()
    assert list(statement["Condition"]["ArnLike"]) == ["kms:EncryptionContext:aws:logs:arn"]
    assert _joined(arn) == "arn::logs:::log-group:*"  # partition, region and account are this stack's
    assert {p["Ref"] for p in arn["Fn::Join"][1] if isinstance(p, dict)} == {
        "AWS::Partition", "AWS::Region", "AWS::AccountId"}


# ---------------------------------------------------------------- least privilege


def test_no_managed_policies_on_function_roles(synthesized, ids):
    for name, logical in ids["roles"].items():
        assert not synthesized.resources[logical]["Properties"].get("ManagedPolicyArns"), name


@pytest.mark.parametrize("spec", schema.FUNCTIONS, ids=lambda f: f.name)
def test_table_access_follows_schema(role_statements, ids, spec):
    table_ids = {logical: tid for tid, logical in ids["tables"].items()}
    readable, writable = set(), set()
    for statement in role_statements[spec.name]:
        actions = set(as_list(statement["Action"]))
        data_actions = {a for a in actions if a.startswith("dynamodb:") and a != "dynamodb:ListStreams"}
        if not data_actions:
            continue
        touched = {table_ids[r] for r in refs(statement["Resource"]) if r in table_ids}
        if statement.get("Sid") in ("TableAppend", "TableQuery"):  # append-only tables: test_audit_table_*
            continue
        readable |= touched
        if data_actions & TABLE_WRITE_ACTIONS:
            writable |= touched
    stream_tables = {spec.stream_of} if spec.stream_of else set()
    assert readable == set(spec.reads) | set(spec.writes) | stream_tables
    assert writable == set(spec.writes)


# ---- audit log (issue 8): append-only
@pytest.mark.parametrize("spec", schema.FUNCTIONS, ids=lambda f: f.name)
def test_audit_table_is_append_only_for_every_function(role_statements, ids, spec):
    """No function may change or remove an audit entry: appenders get PutItem, readers Query, and nothing else
    (no UpdateItem, DeleteItem, BatchWriteItem, PartiQL, Scan) on the Audit table or its indexes."""
    audit = ids["tables"][schema.AUDIT.id]
    granted = set()
    for statement in role_statements[spec.name]:
        if audit in refs(statement["Resource"]):
            granted |= {a for a in as_list(statement["Action"]) if a.startswith("dynamodb:")}
    expected = ({"dynamodb:PutItem"} if schema.AUDIT.id in spec.appends else set()) | (
        {"dynamodb:Query"} if schema.AUDIT.id in spec.queries else set())
    assert granted == expected
    assert not granted & (TABLE_WRITE_ACTIONS - {"dynamodb:PutItem"})
    assert schema.AUDIT.id not in set(spec.reads) | set(spec.writes)


def test_audit_table_grants_are_put_and_query_only(role_statements, ids):
    audit = ids["tables"][schema.AUDIT.id]
    by_sid = {s.get("Sid"): s for s in role_statements["api"]}
    assert as_list(by_sid["TableAppend"]["Action"]) == ["dynamodb:PutItem"]
    assert refs(by_sid["TableAppend"]["Resource"]) == {audit}
    assert as_list(by_sid["TableQuery"]["Action"]) == ["dynamodb:Query"]
    resources = json.dumps(by_sid["TableQuery"]["Resource"])
    assert all(f"/index/{index.name}" in resources for index in schema.AUDIT.indexes)


def test_audit_table_keeps_entries_for_the_retention(synthesized, ids):
    table = synthesized.resources[ids["tables"][schema.AUDIT.id]]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True and "KMSMasterKeyId" in table["SSESpecification"]
# ---- end audit log


def test_index_access_is_granted_by_name(role_statements, ids):
    conversations = ids["tables"][schema.CONVERSATIONS.id]
    statements = [s for s in role_statements["ws_sync"] if "dynamodb:Query" in as_list(s["Action"])]
    resources = json.dumps([s["Resource"] for s in statements])
    for index in schema.CONVERSATIONS.indexes:
        assert f"/index/{index.name}" in resources
    assert "/index/*" not in resources
    assert conversations in resources


def test_ws_sync_cannot_write(role_statements):
    assert not actions_of(role_statements["ws_sync"]) & TABLE_WRITE_ACTIONS
    assert "dynamodb:Query" in actions_of(role_statements["ws_sync"])


def test_ws_default_has_no_data_access(role_statements):
    actions = actions_of(role_statements["ws_default"])
    assert not {
        a for a in actions if a.startswith(("dynamodb:", "kms:", "secretsmanager:", "execute-api:", "s3:", "es:"))
    }


@pytest.mark.parametrize("spec", schema.FUNCTIONS, ids=lambda f: f.name)
def test_manage_connections_only_where_declared(role_statements, ids, spec):
    statements = [s for s in role_statements[spec.name] if "execute-api:ManageConnections" in as_list(s["Action"])]
    if not spec.manage_connections:
        assert statements == []
        return
    assert len(statements) == 1
    resource = json.dumps(statements[0]["Resource"])
    assert ids["ws_api"] in resource
    assert f"/{schema.WS_STAGE}/*/@connections/*" in resource


@pytest.mark.parametrize("spec", schema.FUNCTIONS, ids=lambda f: f.name)
def test_secret_read_only_where_declared(role_statements, ids, spec):
    statements = [s for s in role_statements[spec.name] if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    if spec.needs_secret:
        assert statements and all(refs(s["Resource"]) == {ids["secret"]} for s in statements)
    else:
        assert statements == []


def test_no_wildcard_actions_on_function_roles(role_statements):
    for name, statements in role_statements.items():
        for action in actions_of(statements):
            assert "*" not in action, f"{name}: {action}"


def test_kms_use_is_limited_to_services(role_statements, ids):
    """The stack key only through the services it encrypts; the PII key (called directly) only with its context."""
    for name, statements in role_statements.items():
        for statement in statements:
            if any(a.startswith("kms:") for a in as_list(statement["Action"])):
                condition = json.dumps(statement.get("Condition", {}))
                direct = refs(statement["Resource"]) == {ids["pii_key"]}
                assert ("kms:EncryptionContext:kefu:" if direct else "kms:ViaService") in condition, name


@pytest.mark.parametrize("spec", schema.FUNCTIONS, ids=lambda f: f.name)
def test_bucket_access_follows_schema(role_statements, ids, spec):
    """reads_buckets: GetObject; writes_buckets: GetObject + PutObject; on objects only, nothing else."""
    buckets = {logical: bid for bid, logical in ids["buckets"].items()}
    s3_statements = [s for s in role_statements[spec.name] if any(a.startswith("s3:") for a in as_list(s["Action"]))]
    readable, writable = set(), set()
    # erases_buckets (kefu.privacy, a customer's erasure): DeleteObject on the objects, ListBucket on the bucket
    erase = [s for s in s3_statements if set(as_list(s["Action"])) & {"s3:DeleteObject", "s3:ListBucket"}]
    erased = {buckets[logical] for s in erase for r in as_list(s["Resource"]) for logical in refs(r)}
    assert erased == set(spec.erases_buckets), spec.name
    for statement in erase:
        assert set(as_list(statement["Action"])) in ({"s3:DeleteObject"}, {"s3:ListBucket"}), statement
        for resource in as_list(statement["Resource"]):
            assert _joined(resource).endswith("/*") == ("s3:DeleteObject" in as_list(statement["Action"]))
    s3_statements = [s for s in s3_statements if s not in erase]
    for statement in s3_statements:
        actions = set(as_list(statement["Action"]))
        assert actions <= {"s3:GetObject", "s3:PutObject"}, (spec.name, actions)
        for resource in as_list(statement["Resource"]):
            (logical,) = refs(resource)
            assert _joined(resource).endswith("/*"), (spec.name, resource)  # objects, not the bucket
            readable.add(buckets[logical])
            if "s3:PutObject" in actions:
                writable.add(buckets[logical])
    assert writable == set(spec.writes_buckets)
    assert readable == set(spec.reads_buckets) | set(spec.writes_buckets)

    key_statements = [s for s in role_statements[spec.name] if "s3." in json.dumps(s.get("Condition", {}))]
    if not readable:
        assert key_statements == []
        return
    assert key_statements and all(refs(s["Resource"]) == {ids["key"]} for s in key_statements)
    expected = {"kms:Decrypt", "kms:GenerateDataKey"} if writable else {"kms:Decrypt"}
    assert actions_of(key_statements) == expected


@pytest.mark.parametrize("spec", schema.FUNCTIONS, ids=lambda f: f.name)
def test_search_access_follows_schema(role_statements, ids, spec):
    statements = [s for s in role_statements[spec.name] if any(a.startswith("es:") for a in as_list(s["Action"]))]
    if not spec.search:
        assert statements == []
        return
    assert actions_of(statements) == set(SEARCH_ACTIONS[spec.search])
    for statement in statements:
        resources = as_list(statement["Resource"])
        assert {json.dumps(r) for r in resources} == {
            json.dumps({"Fn::GetAtt": [ids["domain"], "Arn"]}),
            json.dumps({"Fn::Join": ["", [{"Fn::GetAtt": [ids["domain"], "Arn"]}, "/*"]]}),
        }


def test_knowledge_functions_search_and_bucket_levels(role_statements, ids):
    """The wiring the brief relies on: kb_indexer writes, the answering paths only read (models); the api
    function writes attachments (it signs the uploads), ws_message only reads them (HeadObject)."""
    indexer = actions_of(role_statements["kb_indexer"])
    assert SEARCH_WRITE <= indexer and {"s3:GetObject", "s3:PutObject"} <= indexer
    for name in ("api", "ws_message"):
        actions = actions_of(role_statements[name])
        assert {a for a in actions if a.startswith("es:")} == SEARCH_READ, name
        erase = {"s3:DeleteObject", "s3:ListBucket"} if name == "api" else set()  # a customer's erasure
        assert {a for a in actions if a.startswith("s3:")} <= {"s3:GetObject", "s3:PutObject", *erase}, name
        writers = [s for s in role_statements[name] if "s3:PutObject" in as_list(s["Action"])]
        assert {r for s in writers for r in refs(s["Resource"])} == (
            {ids["buckets"]["Attachments"]} if name == "api" else set()), name


def test_domain_policy_trusts_exactly_the_search_roles(synthesized, ids):
    (domain,) = synthesized.of_type("AWS::OpenSearchService::Domain").values()
    statements = domain["Properties"]["AccessPolicies"]["Statement"]
    granted: dict[str, set[str]] = {}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert _joined(statement["Resource"]).endswith(f":domain/{synthesized.stack.search.domain_name}/*")
        principals = as_list(statement["Principal"]["AWS"])
        assert all(set(p) == {"Fn::GetAtt"} and p["Fn::GetAtt"][1] == "Arn" for p in principals), principals
        for principal in principals:
            granted.setdefault(principal["Fn::GetAtt"][0], set()).update(as_list(statement["Action"]))
    expected = {ids["roles"][f.name]: set(SEARCH_ACTIONS[f.search]) for f in schema.FUNCTIONS if f.search}
    assert granted == expected


# ---------------------------------------------------------------- buckets


def test_one_storage_bucket_per_schema_entry(synthesized, ids):
    assert set(ids["buckets"]) == set(schema.BUCKETS)
    web = synthesized.stack.web
    others = {ids["log_bucket"], synthesized.logical_id(web.bucket)}
    assert set(synthesized.of_type("AWS::S3::Bucket")) == set(ids["buckets"].values()) | others


@pytest.mark.parametrize("spec", list(schema.BUCKETS.values()), ids=lambda b: b.id)
def test_storage_bucket_matches_schema(synthesized, ids, spec):
    logical = ids["buckets"][spec.id]
    bucket = synthesized.resources[logical]
    props = bucket["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert refs(rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]) == {ids["key"]}
    assert rule["BucketKeyEnabled"] is True
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert any(r.get("NoncurrentVersionExpiration") == {"NoncurrentDays": 30} and r["Status"] == "Enabled"
               for r in props["LifecycleConfiguration"]["Rules"])
    assert refs(props["LoggingConfiguration"]["DestinationBucketName"]) == {ids["log_bucket"]}
    assert props["LoggingConfiguration"]["LogFilePrefix"] == f"s3/{spec.id.lower()}/"
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"

    statements = [
        s
        for p in synthesized.of_type("AWS::S3::BucketPolicy").values()
        if refs(p["Properties"]["Bucket"]) == {logical}
        for s in as_list(p["Properties"]["PolicyDocument"]["Statement"])
    ]
    ssl_only = [
        s
        for s in statements
        if s["Effect"] == "Deny"
        and s["Principal"] == {"AWS": "*"}
        and s["Action"] == "s3:*"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(ssl_only) == 1
    assert {_joined(r) for r in ssl_only[0]["Resource"]} == {"", "/*"}  # the bucket and its objects
    assert all(refs(r) == {logical} for r in ssl_only[0]["Resource"])
    assert not [s for s in statements if s["Effect"] == "Allow"]  # access comes from the roles only


@pytest.mark.parametrize("spec", list(schema.BUCKETS.values()), ids=lambda b: b.id)
def test_only_browser_buckets_answer_browsers(synthesized, ids, spec):
    """The attachments bucket: presigned POST / GET from the CloudFront origin (CORS); the others: no CORS."""
    props = synthesized.resources[ids["buckets"][spec.id]]["Properties"]
    if not spec.browser_access:
        assert "CorsConfiguration" not in props
        return
    (rule,) = props["CorsConfiguration"]["CorsRules"]
    assert set(rule["AllowedMethods"]) == {"POST", "GET", "HEAD"}
    distribution = synthesized.logical_id(synthesized.stack.web.distribution)
    assert any(refs(origin) == {distribution} and _joined(origin).startswith("https://")
               for origin in rule["AllowedOrigins"]), rule["AllowedOrigins"]
    assert "*" not in rule.get("AllowedHeaders", [])


def test_access_log_bucket_keeps_versions(synthesized, ids):
    """A deleted or overwritten log file stays recoverable 30 days (NIST 800-53 R5 S3BucketVersioningEnabled)."""
    props = synthesized.resources[ids["log_bucket"]]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r.get("ExpirationInDays") == 90 and r.get("NoncurrentVersionExpiration") == {"NoncurrentDays": 30}
               for r in rules)
    assert any(r.get("ExpiredObjectDeleteMarker") is True for r in rules)


def test_access_log_bucket_accepts_the_storage_logs(synthesized, ids):
    statements = [
        s
        for p in synthesized.of_type("AWS::S3::BucketPolicy").values()
        if refs(p["Properties"]["Bucket"]) == {ids["log_bucket"]}
        for s in as_list(p["Properties"]["PolicyDocument"]["Statement"])
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    ]
    for bucket_id, logical in ids["buckets"].items():
        assert any(
            refs(s["Condition"]["ArnLike"]["aws:SourceArn"]) == {logical}
            and _joined(s["Resource"]).endswith(f"/s3/{bucket_id.lower()}/*")
            for s in statements
        ), bucket_id


# ---------------------------------------------------------------- streams


@pytest.mark.parametrize("spec", [f for f in schema.FUNCTIONS if f.stream_of], ids=lambda f: f.name)
def test_stream_consumer_mapping(synthesized, ids, spec):
    mappings = [
        m["Properties"]
        for m in synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
        if refs(m["Properties"]["FunctionName"]) == {ids["functions"][spec.name]}
    ]
    assert len(mappings) == 1
    mapping = mappings[0]
    assert refs(mapping["EventSourceArn"]) == {ids["tables"][spec.stream_of]}
    assert "StreamArn" in json.dumps(mapping["EventSourceArn"])
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 < mapping["MaximumRetryAttempts"] <= 10
    assert mapping["BatchSize"] == (spec.stream_batch_size or STREAM_BATCH_SIZE)
    window = STREAM_MAX_BATCHING_WINDOW_S if spec.stream_batching_window_s is None else spec.stream_batching_window_s
    assert mapping.get("MaximumBatchingWindowInSeconds", 0) == window
    (dlq,) = refs(mapping["DestinationConfig"]["OnFailure"]["Destination"])
    queue = synthesized.resources[dlq]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert refs(queue["Properties"]["KmsMasterKeyId"]) == {ids["key"]}
    ssl_denied = [
        s
        for p in synthesized.of_type("AWS::SQS::QueuePolicy").values()
        if dlq in refs(p["Properties"]["Queues"])
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert ssl_denied


def test_kb_indexer_batches_bulk_imports(synthesized, ids):
    """A bulk import is one batch (up to 1,000 records over 5 s): the model trains once."""
    (mapping,) = _mappings_of(synthesized, ids["functions"]["kb_indexer"])
    assert refs(mapping["EventSourceArn"]) == {ids["tables"][schema.KNOWLEDGE.id]}
    assert mapping["BatchSize"] == 1000
    assert mapping["MaximumBatchingWindowInSeconds"] == 5
    assert mapping["StartingPosition"] == "TRIM_HORIZON"


# ---------------------------------------------------------------- queues


def _ssl_denied(synthesized, queue_logical: str) -> bool:
    return any(
        s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        and queue_logical in refs(s["Resource"])
        for p in synthesized.of_type("AWS::SQS::QueuePolicy").values()
        if queue_logical in refs(p["Properties"]["Queues"])
        for s in as_list(p["Properties"]["PolicyDocument"]["Statement"])
    )


def _mappings_of(synthesized, function_logical: str) -> list[dict]:
    return [
        m["Properties"]
        for m in synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
        if refs(m["Properties"]["FunctionName"]) == {function_logical}
    ]


def test_every_queue_is_a_schema_queue_a_dead_letter_queue_or_a_stream_dlq(synthesized, ids):
    expected = set(ids["queues"].values()) | set(ids["queue_dlqs"].values()) | set(ids["stream_dlqs"].values())
    assert set(synthesized.of_type("AWS::SQS::Queue")) == expected
    assert set(ids["queues"]) == set(schema.QUEUES)


@pytest.mark.parametrize("spec", list(schema.QUEUES.values()), ids=lambda q: q.id)
def test_queue_matches_schema(synthesized, ids, spec):
    queue_logical, dlq_logical = ids["queues"][spec.id], ids["queue_dlqs"][spec.id]
    queue = synthesized.resources[queue_logical]["Properties"]
    dlq = synthesized.resources[dlq_logical]["Properties"]

    for props in (queue, dlq):  # SSE-KMS with the stack key, not SQS-managed SSE
        assert refs(props["KmsMasterKeyId"]) == {ids["key"]}
        assert "SqsManagedSseEnabled" not in props or props["SqsManagedSseEnabled"] is False
    assert _ssl_denied(synthesized, queue_logical)
    assert _ssl_denied(synthesized, dlq_logical)

    assert refs(queue["RedrivePolicy"]["deadLetterTargetArn"]) == {dlq_logical}
    assert queue["RedrivePolicy"]["maxReceiveCount"] == spec.max_receives
    assert "RedrivePolicy" not in dlq

    consumers = [f for f in schema.FUNCTIONS if f.consumes == spec.id]
    if consumers:
        assert queue["VisibilityTimeout"] >= VISIBILITY_TIMEOUT_FACTOR * max(f.timeout_s for f in consumers)
    # A message moved to the DLQ keeps its enqueue time: the DLQ must keep it for longer.
    assert dlq["MessageRetentionPeriod"] > queue.get("MessageRetentionPeriod", 4 * 86400)
    assert dlq["MessageRetentionPeriod"] == 14 * 86400


@pytest.mark.parametrize("spec", schema.FUNCTIONS, ids=lambda f: f.name)
def test_queue_send_only_where_declared(role_statements, ids, spec):
    schema_queues = {logical: qid for qid, logical in ids["queues"].items()}
    own_stream_dlq = {ids["stream_dlqs"][spec.name]} if spec.name in ids["stream_dlqs"] else set()
    sent_to: set[str] = set()
    for statement in role_statements[spec.name]:
        if "sqs:SendMessage" not in as_list(statement["Action"]):
            continue
        targets = refs(statement["Resource"])
        assert targets <= set(schema_queues) | own_stream_dlq, (spec.name, targets)
        sent_to |= {schema_queues[t] for t in targets if t in schema_queues}
    assert sent_to == set(spec.sends_to)

    key_statements = [
        s
        for s in role_statements[spec.name]
        if "kms:GenerateDataKey" in as_list(s["Action"]) and "sqs." in json.dumps(s.get("Condition", {}))
    ]
    if spec.sends_to:
        assert key_statements and all(refs(s["Resource"]) == {ids["key"]} for s in key_statements)
        assert {"kms:GenerateDataKey", "kms:Decrypt"} <= actions_of(key_statements)
    elif not spec.stream_of:  # a stream consumer sends failed batches to its own DLQ
        assert key_statements == []


@pytest.mark.parametrize("spec", schema.FUNCTIONS, ids=lambda f: f.name)
def test_queue_consumption_only_where_declared(synthesized, role_statements, ids, spec):
    receive = [s for s in role_statements[spec.name] if "sqs:ReceiveMessage" in as_list(s["Action"])]
    queue_mappings = [
        m
        for m in _mappings_of(synthesized, ids["functions"][spec.name])
        if refs(m["EventSourceArn"]) & set(ids["queues"].values())
    ]
    if not spec.consumes:
        assert receive == [] and queue_mappings == []
        return
    queue_logical = ids["queues"][spec.consumes]
    assert receive and all(refs(s["Resource"]) == {queue_logical} for s in receive)
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"} <= actions_of(receive)
    decrypt = [
        s
        for s in role_statements[spec.name]
        if "kms:Decrypt" in as_list(s["Action"]) and "sqs." in json.dumps(s.get("Condition", {}))
    ]
    assert decrypt and all(refs(s["Resource"]) == {ids["key"]} for s in decrypt)

    (mapping,) = queue_mappings
    assert refs(mapping["EventSourceArn"]) == {queue_logical}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 10
    assert mapping.get("MaximumBatchingWindowInSeconds", 0) == 0
    assert mapping.get("Enabled", True) is True
    # SQS mappings retry through the queue's redrive policy, not stream-style settings.
    assert "DestinationConfig" not in mapping and "StartingPosition" not in mapping


def test_timers_function_consumes_the_timers_queue(synthesized, ids):
    """The schema wiring the brief relies on: the timers function is the Timers consumer."""
    assert schema.FUNCTIONS_BY_NAME["timers"].consumes == schema.TIMERS.id
    mappings = _mappings_of(synthesized, ids["functions"]["timers"])
    assert [refs(m["EventSourceArn"]) for m in mappings] == [{ids["queues"][schema.TIMERS.id]}]
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# ---------------------------------------------------------------- WebSocket API


def test_websocket_api(template):
    template.resource_count_is("AWS::ApiGatewayV2::Api", 1)
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {"ProtocolType": "WEBSOCKET", "RouteSelectionExpression": schema.WS_ROUTE_SELECTION_EXPRESSION},
    )


def test_websocket_routes_are_exactly_the_schema_routes(synthesized, ids):
    routes = synthesized.of_type("AWS::ApiGatewayV2::Route")
    assert sorted(r["Properties"]["RouteKey"] for r in routes.values()) == sorted(schema.WS_ROUTES)
    integrations = synthesized.of_type("AWS::ApiGatewayV2::Integration")
    for route in routes.values():
        props = route["Properties"]
        (integration_id,) = refs(props["Target"])
        target = refs(integrations[integration_id]["Properties"]["IntegrationUri"])
        assert target == {ids["functions"][schema.WS_ROUTES[props["RouteKey"]]]}, props["RouteKey"]


@pytest.mark.parametrize("route_key", sorted(schema.WS_ROUTES))
def test_websocket_route_has_a_lambda_integration(synthesized, ids, route_key):
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"] for r in synthesized.of_type("AWS::ApiGatewayV2::Route").values()
    }
    assert route_key in routes
    (integration_id,) = refs(routes[route_key]["Target"])
    integration = synthesized.resources[integration_id]["Properties"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    function = ids["functions"][schema.WS_ROUTES[route_key]]
    assert refs(integration["IntegrationUri"]) == {function}
    invokable = [
        props
        for props in (p["Properties"] for p in synthesized.of_type("AWS::Lambda::Permission").values())
        if props["Principal"] == "apigateway.amazonaws.com"
        and function in refs(props["FunctionName"])
        and ids["ws_api"] in refs(props.get("SourceArn", {}))
        and _joined(props.get("SourceArn", "")).endswith(f"/*{route_key}")
    ]
    assert invokable, f"API Gateway may not invoke {schema.WS_ROUTES[route_key]} for {route_key}"


def test_authorizer_guards_connect_only(synthesized, ids):
    authorizers = synthesized.of_type("AWS::ApiGatewayV2::Authorizer")
    assert len(authorizers) == 1
    ((authorizer_id, authorizer),) = authorizers.items()
    assert authorizer["Properties"]["AuthorizerType"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == ["route.request.querystring.token"]
    assert ids["functions"][schema.WS_AUTHORIZER] in refs(authorizer["Properties"]["AuthorizerUri"])
    for route in synthesized.of_type("AWS::ApiGatewayV2::Route").values():
        props = route["Properties"]
        if props["RouteKey"] == "$connect":
            assert props["AuthorizationType"] == "CUSTOM"
            assert refs(props["AuthorizerId"]) == {authorizer_id}
        else:
            assert "AuthorizerId" not in props


def test_route_responses_for_all_but_connect_and_disconnect(synthesized):
    routes = synthesized.of_type("AWS::ApiGatewayV2::Route")
    with_response = {
        routes[ref]["Properties"]["RouteKey"]
        for rr in synthesized.of_type("AWS::ApiGatewayV2::RouteResponse").values()
        for ref in refs(rr["Properties"]["RouteId"])
    }
    assert with_response == set(schema.WS_ROUTES) - {"$connect", "$disconnect"}


def test_websocket_stage_logs_and_throttles(synthesized):
    stages = synthesized.of_type("AWS::ApiGatewayV2::Stage")
    assert len(stages) == 1
    ((stage_id, stage),) = stages.items()
    props = stage["Properties"]
    assert props["StageName"] == schema.WS_STAGE
    assert props["AutoDeploy"] is True
    (log_group,) = refs(props["AccessLogSettings"]["DestinationArn"])
    assert synthesized.resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    log_format = json.loads(props["AccessLogSettings"]["Format"])
    assert log_format["requestId"] == "$context.requestId"
    assert log_format["connectionId"] == "$context.connectionId"
    throttle = props["DefaultRouteSettings"]
    assert throttle["ThrottlingRateLimit"] > 0 and throttle["ThrottlingBurstLimit"] > 0
    account = next(iter(synthesized.of_type("AWS::ApiGateway::Account")))
    assert account in stage.get("DependsOn", [])


# ---------------------------------------------------------------- REST API


def test_rest_api_stage_logging(synthesized):
    stages = synthesized.of_type("AWS::ApiGateway::Stage")
    assert len(stages) == 1
    ((_, stage),) = stages.items()
    props = stage["Properties"]
    assert props["StageName"] == schema.REST_STAGE
    assert "DestinationArn" in props["AccessLogSetting"]
    assert props["TracingEnabled"] is True
    assert props["MethodSettings"][0]["LoggingLevel"] in ("ERROR", "INFO")


def _resource_paths(synthesized) -> dict[str, str]:
    """Logical id of each REST resource -> its full path ("" for the root)."""
    resources = synthesized.of_type("AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        if logical_id not in resources:
            return ""
        if logical_id not in paths:
            props = resources[logical_id]["Properties"]
            parent = props["ParentId"]
            parent_id = parent["Ref"] if "Ref" in parent else ""
            paths[logical_id] = path_of(parent_id) + "/" + props["PathPart"]
        return paths[logical_id]

    for logical_id in resources:
        path_of(logical_id)
    return paths


def test_rest_api_proxies_to_the_rest_function_with_api_keys(synthesized, ids):
    methods = synthesized.of_type("AWS::ApiGateway::Method")
    assert methods
    validators = set(synthesized.of_type("AWS::ApiGateway::RequestValidator"))
    paths = _resource_paths(synthesized)
    public = set(schema.REST_PUBLIC_ROUTES)
    seen_public = set()
    for method in methods.values():
        props = method["Properties"]
        if props["HttpMethod"] == "OPTIONS":  # CORS preflight: MOCK, no key, no Lambda
            assert props["Integration"]["Type"] == "MOCK"
            assert not props.get("ApiKeyRequired")
            continue
        route = (props["HttpMethod"], paths.get(props["ResourceId"].get("Ref", ""), "/"))
        if route in public:  # called by browsers and apps with a kefu token, not an API key
            assert props["ApiKeyRequired"] is False
            seen_public.add(route)
        else:
            assert props["ApiKeyRequired"] is True
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert ids["functions"][schema.REST_FUNCTION] in refs(props["Integration"]["Uri"])
        assert refs(props["RequestValidatorId"]) <= validators and props["RequestValidatorId"]
    assert seen_public == public


def test_usage_plan_throttles(template):
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Throttle": {"RateLimit": Match.any_value(), "BurstLimit": Match.any_value()}},
    )
    # keys are issued per workspace at run time (POST /workspaces/{ws}/api-keys), none in the template
    template.resource_count_is("AWS::ApiGateway::ApiKey", 0)


def test_only_the_api_function_issues_api_keys(role_statements, synthesized, ids):
    for name, statements in role_statements.items():
        gateway_actions = {a for a in actions_of(statements) if a.startswith("apigateway:")}
        if name == schema.REST_FUNCTION:
            assert gateway_actions == {"apigateway:GET", "apigateway:POST", "apigateway:DELETE"}
            resources = json.dumps([s["Resource"] for s in statements if "apigateway" in json.dumps(s["Action"])])
            assert "/apikeys" in resources and "/usageplans" in resources and '"*"' not in resources
        else:
            assert not gateway_actions, name
    env = synthesized.resources[ids["functions"][schema.REST_FUNCTION]]["Properties"]["Environment"]["Variables"]
    (plan,) = synthesized.of_type("AWS::ApiGateway::UsagePlan").values()
    assert env[schema.ENV_USAGE_PLAN_NAME] == plan["Properties"]["UsagePlanName"]


# ---------------------------------------------------------------- search, escalation


def _latest_opensearch_version() -> str:
    versions = []
    for name in dir(opensearch.EngineVersion):
        match = re.fullmatch(r"OPENSEARCH_(\d+)_(\d+)", name)
        if match:
            versions.append((int(match[1]), int(match[2])))
    major, minor = max(versions)
    return f"OpenSearch_{major}.{minor}"


def test_opensearch_domain(synthesized, ids):
    domains = synthesized.of_type("AWS::OpenSearchService::Domain")
    assert len(domains) == 1
    props = next(iter(domains.values()))["Properties"]
    assert props["EngineVersion"] == _latest_opensearch_version()
    assert props["ClusterConfig"]["InstanceCount"] == 1
    assert props["EncryptionAtRestOptions"]["Enabled"] is True
    assert refs(props["EncryptionAtRestOptions"]["KmsKeyId"]) == {ids["key"]}
    assert props["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert props["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert "TLS-1-2" in props["DomainEndpointOptions"]["TLSSecurityPolicy"]
    for log in ("SEARCH_SLOW_LOGS", "INDEX_SLOW_LOGS", "ES_APPLICATION_LOGS"):
        assert props["LogPublishingOptions"][log]["Enabled"] is True
    for statement in props["AccessPolicies"]["Statement"]:
        assert "*" not in json.dumps(statement["Principal"])
    assert "AdvancedSecurityOptions" not in props or not props["AdvancedSecurityOptions"].get("Enabled")


def test_escalation_state_machine(synthesized, ids):
    from kefu import escalation

    machines = synthesized.of_type("AWS::StepFunctions::StateMachine")
    assert len(machines) == 1
    props = machines[ids["escalation"]]["Properties"]
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    # the same ASL the local stack runs, with the table, topic and bus filled in by CloudFormation
    subs = props["DefinitionSubstitutions"]
    assert subs[escalation.TABLE] == {"Ref": ids["tables"][schema.TICKETS.id]}
    assert subs[escalation.TOPIC] == {"Ref": ids["alert_topic"]}
    assert subs[escalation.BUS] == "default"
    assert json.loads(props["DefinitionString"]) == escalation.definition()
    # least privilege: read and update tickets, publish alerts, put events with our source only
    role = synthesized.resources[props["RoleArn"]["Fn::GetAtt"][0]]
    statements = [s for p in synthesized.of_type("AWS::IAM::Policy").values()
                  if {"Ref": props["RoleArn"]["Fn::GetAtt"][0]} in p["Properties"]["Roles"]
                  for s in as_list(p["Properties"]["PolicyDocument"]["Statement"])]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "states.amazonaws.com"}
    by_sid = {s.get("Sid"): s for s in statements}
    assert set(as_list(by_sid["Tickets"]["Action"])) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert refs(by_sid["Tickets"]["Resource"]) == {ids["tables"][schema.TICKETS.id]}
    assert by_sid["Alerts"]["Action"] == "sns:Publish" and refs(by_sid["Alerts"]["Resource"]) == {ids["alert_topic"]}
    assert by_sid["Events"]["Condition"] == {"StringEquals": {"events:source": schema.EVENT_SOURCE_TICKETS}}
    assert not any("Action" in s and "*" in json.dumps(s["Action"]) for s in statements)
    topic = synthesized.resources[ids["alert_topic"]]["Properties"]
    assert refs(topic["KmsMasterKeyId"]) == {ids["key"]}


def test_only_ticket_events_starts_and_stops_escalations(role_statements, ids):
    for name, statements in role_statements.items():
        actions = actions_of(statements)
        if name == "ticket_events":
            start = next(s for s in statements if s.get("Sid") == "StartEscalations")
            assert start["Action"] == "states:StartExecution" and refs(start["Resource"]) == {ids["escalation"]}
            stop = next(s for s in statements if s.get("Sid") == "StopEscalations")
            assert stop["Action"] == "states:StopExecution" and ":execution:" in json.dumps(stop["Resource"])
        else:
            assert not {a for a in actions if a.startswith("states:")}, name


# ---------------------------------------------------------------- web


def test_buckets_block_public_access_and_enforce_ssl(synthesized):
    buckets = synthesized.of_type("AWS::S3::Bucket")
    assert len(buckets) >= 2
    policies = synthesized.of_type("AWS::S3::BucketPolicy").values()
    for logical, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical
        denies_insecure = any(
            s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for p in policies
            if logical in refs(p["Properties"]["Bucket"])
            for s in p["Properties"]["PolicyDocument"]["Statement"]
        )
        assert denies_insecure, logical


def test_web_bucket_logs_to_log_bucket(synthesized):
    web = synthesized.stack.web
    bucket = synthesized.resources[synthesized.logical_id(web.bucket)]["Properties"]
    assert refs(bucket["LoggingConfiguration"]["DestinationBucketName"]) == {synthesized.logical_id(web.log_bucket)}


def test_cloudfront_uses_origin_access_control(synthesized):
    synthesized.template.resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    (distribution,) = synthesized.of_type("AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    (origin,) = config["Origins"]
    assert refs(origin["OriginAccessControlId"]) == set(synthesized.of_type("AWS::CloudFront::OriginAccessControl"))
    assert origin["S3OriginConfig"]["OriginAccessIdentity"] == ""
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["DefaultRootObject"] == "index.html"
    assert "Bucket" in config["Logging"]


# ---------------------------------------------------------------- observability


def test_alarms_per_function(synthesized, ids):
    alarms = synthesized.monitoring.of_type("AWS::CloudWatch::Alarm").values()
    for name, logical in ids["functions"].items():
        for metric in ("Errors", "Throttles"):
            matching = [
                a
                for a in alarms
                if a["Properties"].get("MetricName") == metric
                and a["Properties"].get("Namespace") == "AWS/Lambda"
                and {"Name": "FunctionName", "Value": {"Ref": logical}} in a["Properties"].get("Dimensions", [])
            ]
            assert len(matching) == 1, f"{name} {metric}"


def test_alarm_on_every_dead_letter_queue(synthesized, ids):
    dlqs = set(ids["queue_dlqs"].values()) | set(ids["stream_dlqs"].values())
    alarmed = {
        queue
        for a in synthesized.monitoring.of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/SQS"
        and a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and a["Properties"]["Threshold"] == 1
        for queue in refs(a["Properties"].get("Dimensions", []))
    }
    assert alarmed == dlqs


def test_websocket_server_error_alarm(synthesized, ids):
    alarms = [
        a
        for a in synthesized.monitoring.of_type("AWS::CloudWatch::Alarm").values()
        if ids["ws_api"] in json.dumps(a["Properties"])
    ]
    metric_names = json.dumps(alarms)
    assert alarms and "IntegrationError" in metric_names and "ExecutionError" in metric_names


def test_every_alarm_notifies_the_encrypted_topic(synthesized, ids):
    topic = synthesized.resources[ids["topic"]]["Properties"]
    assert refs(topic["KmsMasterKeyId"]) == {ids["key"]}
    for logical, alarm in synthesized.monitoring.of_type("AWS::CloudWatch::Alarm").items():
        assert refs(alarm["Properties"]["AlarmActions"]) == {ids["topic"]}, logical


def test_dashboard_exists(synthesized):
    synthesized.monitoring.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)


# ---------------------------------------------------------------- outputs, assets


def test_outputs(synthesized):
    outputs = synthesized.template_json["Outputs"]
    for name in ("WebSocketUrl", "CallbackUrl", "RestUrl", "CloudFrontDomain"):
        assert name in outputs
    for table_id in schema.TABLES:
        assert f"{table_id}TableName" in outputs
    for queue_id in schema.QUEUES:
        assert f"{queue_id}QueueUrl" in outputs
    for bucket_id in schema.BUCKETS:
        assert f"{bucket_id}BucketName" in outputs


def test_dependencies_layer_hash_follows_requirements(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pyjwt==2.15.1\n")
    first = dependencies_asset_hash(requirements, precompiled=True)
    assert first == dependencies_asset_hash(requirements, precompiled=True)
    requirements.write_text("pyjwt==2.15.2\n")
    assert dependencies_asset_hash(requirements, precompiled=True) != first
    assert dependencies_asset_hash(requirements, precompiled=False) != dependencies_asset_hash(
        requirements, precompiled=True
    )
    assert dependencies_asset_hash(requirements, precompiled=True, unused={}) != dependencies_asset_hash(
        requirements, precompiled=True
    )


def test_no_docker_bundling(synthesized):
    """Every asset is a file/zip asset: nothing needs a Docker image at synth or deploy."""
    assets = json.loads((synthesized.outdir / f"{synthesized.stack.artifact_id}.assets.json").read_text())
    assert not assets.get("dockerImages")


def test_scheduled_functions_get_an_eventbridge_rule_that_alone_may_invoke_them(synthesized, ids):
    scheduled = {f.name: f.schedule for f in schema.FUNCTIONS if f.schedule}
    assert scheduled == {"kb_maintain": "rate(1 day)"}
    rules = synthesized.of_type("AWS::Events::Rule")
    for name, expression in scheduled.items():
        function_id = ids["functions"][name]
        [(rule_id, rule)] = [(k, r) for k, r in rules.items()
                             if any(refs(t["Arn"]) == {function_id} for t in r["Properties"]["Targets"])]
        assert rule["Properties"]["ScheduleExpression"] == expression
        assert rule["Properties"]["State"] == "ENABLED"
        assert rule["Properties"]["Targets"][0]["RetryPolicy"] == {"MaximumRetryAttempts": 2}
        permissions = [p["Properties"] for p in synthesized.of_type("AWS::Lambda::Permission").values()
                       if refs(p["Properties"]["FunctionName"]) == {function_id}]
        assert permissions == [{"Action": "lambda:InvokeFunction", "FunctionName": permissions[0]["FunctionName"],
                                "Principal": "events.amazonaws.com",
                                "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}]
