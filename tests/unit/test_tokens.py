import time

import jwt
import pytest

from kefu import tokens
from kefu.errors import Unauthorized

SECRET = "s" * 48


def test_visitor_roundtrip_with_identity():
    token = tokens.issue(SECRET, kind="visitor", workspace="demo", subject="cust-1", name="张三", tags=["vip"])
    who = tokens.verify(SECRET, token)
    assert (who.workspace, who.role, who.id, who.name, who.tags) == ("demo", "customer", "cust-1", "张三", ("vip",))


def test_anonymous_visitor_gets_a_fresh_id():
    a = tokens.verify(SECRET, tokens.issue(SECRET, kind="visitor", workspace="demo"))
    b = tokens.verify(SECRET, tokens.issue(SECRET, kind="visitor", workspace="demo"))
    assert a.id != b.id and a.id.startswith("v_")


def test_agent_token():
    who = tokens.verify(SECRET, tokens.issue(SECRET, kind="agent", workspace="demo", subject="alice"))
    assert who.role == "agent" and who.id == "alice"


@pytest.mark.parametrize("bad", [None, "", "abc", "a.b.c"])
def test_garbage_is_refused(bad):
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, bad)


def test_expired_token_is_refused():
    token = tokens.issue(SECRET, kind="visitor", workspace="demo", ttl_s=10, now=time.time() - 3600)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(SECRET, token)


def test_wrong_key_and_tampering_are_refused():
    token = tokens.issue(SECRET, kind="visitor", workspace="demo")
    with pytest.raises(Unauthorized):
        tokens.verify("x" * 48, token)
    head, body, sig = token.split(".")
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, f"{head}.{body[:-2]}AA.{sig}")


def test_wrong_audience_and_algorithm_none_are_refused():
    claims = {"iss": "kefu", "aud": "someone-else", "sub": "x", "kind": "visitor", "ws": "demo",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"))
    claims["aud"] = tokens.AUDIENCE
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, unsigned)


@pytest.mark.parametrize("kwargs", [
    {"kind": "visitor", "workspace": "Bad WS"},
    {"kind": "visitor", "workspace": "demo", "subject": "has space"},
    {"kind": "visitor", "workspace": "demo", "tags": ["<script>"]},
    {"kind": "agent", "workspace": "demo"},
    {"kind": "admin", "workspace": "demo", "subject": "x"},
])
def test_issue_validates_its_input(kwargs):
    with pytest.raises(ValueError):
        tokens.issue(SECRET, **kwargs)
