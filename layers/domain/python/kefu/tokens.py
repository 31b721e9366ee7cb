"""Signed identity tokens (JWT, HS256) for visitors and agents.

A visitor token is minted for an anonymous visitor by the REST API, or signed by the
integrator's backend with a known customer id, name and tags. An agent token names an
agent of the workspace. The signing key lives in Secrets Manager (a local file in the
local stack); this module only signs and verifies.
"""

from __future__ import annotations

import re
import time

import jwt

from .errors import Unauthorized
from .models import Principal, new_id

ISSUER = "kefu"
AUDIENCE = "kefu-realtime"
ALGORITHM = "HS256"
DEFAULT_TTL_S = 12 * 3600
# no token lives longer: issue() refuses more and verify() refuses a token that claims more. An erasure's record
# (kefu.privacy: a customer's tokens issued at or before it are refused) is kept past this, so it outlives them all.
MAX_TTL_S = 12 * 3600
WORKSPACE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")


def issue(
    secret: str,
    *,
    kind: str,
    workspace: str,
    subject: str | None = None,
    name: str = "",
    tags: tuple[str, ...] | list[str] = (),
    ttl_s: int = DEFAULT_TTL_S,
    now: float | None = None,
) -> str:
    if kind not in ("visitor", "agent"):
        raise ValueError("kind must be visitor or agent")
    if not WORKSPACE_RE.match(workspace):
        raise ValueError(f"invalid workspace id {workspace!r}")
    if subject is None:
        if kind == "agent":
            raise ValueError("an agent token needs the agent id")
        subject = new_id("v")  # anonymous visitor
    if not ID_RE.match(subject):
        raise ValueError(f"invalid id {subject!r}: 1-64 of A-Z a-z 0-9 _ . : -")
    bad = [t for t in tags if not TAG_RE.match(t)]
    if bad:
        raise ValueError(f"invalid tags {bad!r}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s: 1 to {MAX_TTL_S} seconds")
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "kind": kind,
        "ws": workspace,
        "name": name[:80],
        "tags": list(tags),
        "iat": issued,
        "exp": issued + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str | None) -> Principal:
    """The principal a token names, or Unauthorized. Agent roles are filled in from the directory later."""
    if not token:
        raise Unauthorized("missing token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid token") from None
    kind, workspace, subject = claims.get("kind"), claims.get("ws"), claims.get("sub")
    issued, expires = claims.get("iat"), claims.get("exp")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (issued, expires)) \
            or expires - issued > MAX_TTL_S:
        raise Unauthorized("invalid token")  # whole seconds, as issue() writes them; never longer than MAX_TTL_S
    if kind not in ("visitor", "agent") or not isinstance(workspace, str) or not WORKSPACE_RE.match(workspace):
        raise Unauthorized("invalid token")
    if not isinstance(subject, str) or not ID_RE.match(subject):
        raise Unauthorized("invalid token")
    tags = claims.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and TAG_RE.match(t) for t in tags):
        raise Unauthorized("invalid token")
    name = claims.get("name") if isinstance(claims.get("name"), str) else ""
    return Principal(
        workspace=workspace,
        role="customer" if kind == "visitor" else "agent",
        id=subject,
        name=name,
        tags=tuple(tags),
        issued_at=issued,  # an erasure refuses the customer's tokens issued at or before it (kefu.privacy)
    )
