"""Issue 8: TOTP (RFC 4226 / RFC 6238 test vectors), step-up tokens (expiry, binding, kinds), replay, and the
audit entries' content (no personal data, known actions only)."""

from __future__ import annotations

import time

import jwt
import pytest
from kefu import audit, step_up, tokens
from kefu.errors import Unauthorized

KEY = "unit-test-signing-key-" + "x" * 32
SHA1 = b"12345678901234567890"
SHA256 = b"12345678901234567890123456789012"
SHA512 = b"1234567890" * 6 + b"1234"

# RFC 6238 appendix B: (time, SHA1, SHA256, SHA512), 8 digits, 30 s steps
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
# RFC 4226 appendix D: HOTP of counters 0..9, 6 digits
RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]


@pytest.mark.parametrize("moment,sha1,sha256,sha512", RFC6238)
def test_totp_matches_rfc6238(moment, sha1, sha256, sha512):
    assert step_up.totp(SHA1, moment, digits=8, algorithm="SHA1") == sha1
    assert step_up.totp(SHA256, moment, digits=8, algorithm="SHA256") == sha256
    assert step_up.totp(SHA512, moment, digits=8, algorithm="SHA512") == sha512


def test_hotp_matches_rfc4226():
    assert [step_up.hotp(SHA1, counter) for counter in range(10)] == RFC4226


def test_base32_secrets_and_the_enrolment_uri():
    secret = step_up.new_secret()
    assert len(secret) == 32 and secret.isalnum() and secret.upper() == secret
    assert step_up.totp(secret, 59) == step_up.totp(step_up._key(secret), 59)
    import base64

    assert step_up.totp(base64.b32encode(SHA1).decode(), 59, digits=8) == "94287082"
    uri = step_up.otpauth_uri(secret, "ws-1", "adm")
    assert uri.startswith("otpauth://totp/kefu%3Aws-1%2Fadm?") and f"secret={secret}" in uri
    assert "issuer=kefu" in uri and "digits=6" in uri and "period=30" in uri


def test_a_code_matches_its_step_and_the_neighbours_only():
    secret = step_up.new_secret()
    now = 1_800_000_000
    step = step_up.time_step(now)
    assert step_up.match_step(secret, step_up.totp(secret, now), now) == step
    assert step_up.match_step(secret, step_up.totp(secret, now - 30), now) == step - 1  # drift
    assert step_up.match_step(secret, step_up.totp(secret, now + 30), now) == step + 1
    assert step_up.match_step(secret, step_up.totp(secret, now - 90), now) is None  # too old
    for bad in ("", "12345", "1234567", "abcdef", None):
        assert step_up.match_step(secret, bad, now) is None


def test_replay_a_used_step_never_matches_again():
    secret = step_up.new_secret()
    now = 1_800_000_000
    code = step_up.totp(secret, now)
    step = step_up.match_step(secret, code, now)
    assert step_up.match_step(secret, code, now, after_step=step) is None
    assert step_up.match_step(secret, code, now + 20, after_step=step) is None  # still in its window
    # nor does an earlier code once a later one was used
    assert step_up.match_step(secret, step_up.totp(secret, now - 30), now, after_step=step) is None
    assert step_up.match_step(secret, step_up.totp(secret, now + 30), now + 30, after_step=step) == step + 1


def test_failure_windows_are_fixed_five_minutes():
    assert step_up.failure_window(1_800_000_123) == 1_800_000_000 - 1_800_000_000 % 300
    assert step_up.failure_window(1_800_000_000 + 299) == step_up.failure_window(1_800_000_000)


def test_step_up_token_binds_agent_and_workspace_and_expires():
    now = time.time()
    token = step_up.issue(KEY, workspace="ws-1", agent_id="adm", method="totp", now=now)
    proof = step_up.verify(KEY, token, workspace="ws-1", agent_id="adm")
    assert (proof.method, proof.expires_at - proof.issued_at) == ("totp", step_up.STEP_UP_TTL_S)
    for workspace, agent_id in (("ws-2", "adm"), ("ws-1", "ag")):
        with pytest.raises(step_up.StepUpRequired):
            step_up.verify(KEY, token, workspace=workspace, agent_id=agent_id)
    with pytest.raises(step_up.StepUpRequired, match="expired"):
        step_up.verify(KEY, token, workspace="ws-1", agent_id="adm", now=now + step_up.STEP_UP_TTL_S)
    old = step_up.issue(KEY, workspace="ws-1", agent_id="adm", method="sso", now=now - 301)
    with pytest.raises(step_up.StepUpRequired, match="expired"):
        step_up.verify(KEY, old, workspace="ws-1", agent_id="adm")
    with pytest.raises(step_up.StepUpRequired):
        step_up.verify(KEY, None, workspace="ws-1", agent_id="adm")
    with pytest.raises(step_up.StepUpRequired):
        step_up.verify("another-key-" + "y" * 32, token, workspace="ws-1", agent_id="adm")
    with pytest.raises(ValueError):
        step_up.issue(KEY, workspace="ws-1", agent_id="adm", method="totp", ttl_s=3600)


def test_step_up_and_agent_tokens_are_not_interchangeable():
    stepped = step_up.issue(KEY, workspace="ws-1", agent_id="adm", method="totp")
    with pytest.raises(Unauthorized):
        tokens.verify(KEY, stepped)  # never an agent token
    agent = tokens.issue(KEY, kind="agent", workspace="ws-1", subject="adm")
    with pytest.raises(step_up.StepUpRequired):
        step_up.verify(KEY, agent, workspace="ws-1", agent_id="adm")  # never a step-up token
    # the audience alone does not make one: a long-lived token with the step-up audience is refused
    claims = jwt.decode(stepped, KEY, algorithms=["HS256"], audience=step_up.AUDIENCE)
    forged = jwt.encode({**claims, "exp": claims["iat"] + 86400}, KEY, algorithm="HS256")
    with pytest.raises(step_up.StepUpRequired):
        step_up.verify(KEY, forged, workspace="ws-1", agent_id="adm")
    assert step_up.StepUpRequired("x").code == "step_up_required"


class Sink:
    def __init__(self):
        self.entries = []

    def append(self, entry):
        self.entries.append(entry)


def test_record_appends_an_entry_without_personal_data():
    sink = Sink()
    made = audit.record("ws-1", "customer.export", actor=audit.agent("adm", "admin"), target="13812345678",
                        source=audit.Source("203.0.113.9", "Mozilla/5.0"), store=sink,
                        details={"items": 3, "note": "mail zhang@example.com", "ids": ["a", "b"]})
    assert sink.entries == [made]
    public = made.public()
    assert public["action"] == "customer.export" and public["actor"] == {"type": "agent", "id": "adm",
                                                                         "role": "admin"}
    assert public["sourceIp"] == "203.0.113.9" and public["userAgent"] == "Mozilla/5.0"
    assert "13812345678" not in str(public) and "zhang@example.com" not in str(public)
    assert public["details"]["items"] == 3 and public["details"]["ids"] == ["a", "b"]
    assert made.at.endswith("Z") and len(made.at) == 24


def test_record_refuses_unknown_actions_and_nested_details():
    with pytest.raises(ValueError):
        audit.record("ws-1", "something.else", actor=audit.agent("adm"), store=Sink())
    with pytest.raises(TypeError):
        audit.record("ws-1", "kb.import", actor=audit.agent("adm"), details={"body": {"text": "x"}}, store=Sink())
    with pytest.raises(ValueError):
        audit.record("ws-1", "kb.import", actor=audit.agent("adm"), outcome="maybe", store=Sink())


def test_time_bounds_and_retention():
    assert audit.parse_time("2026-11-21") == "2026-11-21"
    assert audit.parse_time("2026-11-21T09:30:00+08:00") == "2026-11-21T01:30:00.000Z"
    with pytest.raises(ValueError):
        audit.parse_time("yesterday")
    entry = audit.entry("ws-1", "kb.delete", actor=audit.integration("key1"))
    assert audit.expires_at(entry.at) - time.time() == pytest.approx(audit.RETENTION_DAYS * 86400, abs=5)
