"""Step-up verification before sensitive actions (issue 8): TOTP (RFC 6238) and short-lived step-up tokens.

An agent enrols a TOTP secret once (`POST /workspaces/{ws}/step-up/totp`: the secret is returned once, as an
otpauth:// URI for an authenticator app, and kept only in the agent's step-up item of the Directory table,
which is encrypted with the stack's KMS key). `POST /workspaces/{ws}/step-up` with a current code returns a
step-up token; the integrator's sign-on may mint one too (`POST /integrations/agent-tokens` with
`stepUp: true`, when the user has just re-authenticated). Sensitive routes then require the header
`X-Kefu-Step-Up: <token>`: a token of the same agent and workspace, at most STEP_UP_TTL_S old.

A step-up token is a JWT of its own audience ("kefu-step-up") and kind ("step-up"): `tokens.verify` refuses
it, so it can never be used as an agent token, and an agent token is no step-up token.

Replay: each accepted code's time step is stored (`lastStep`); a code of that step or an earlier one is
refused, so a code works once (RFC 6238 section 5.2). Failed codes are counted per agent in fixed windows:
MAX_FAILURES per FAILURE_WINDOW_S, then every attempt is refused until the window ends.

Only the standard library and PyJWT: no boto3 here (the store is adapters/audit_store.StepUpStore).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import jwt

from .errors import Forbidden
from .tokens import ALGORITHM, ID_RE, ISSUER, WORKSPACE_RE

HEADER = "X-Kefu-Step-Up"
AUDIENCE = "kefu-step-up"
KIND = "step-up"
STEP_UP_TTL_S = 300  # a step-up token is fresh for 5 minutes
PERIOD_S = 30
DIGITS = 6
DRIFT_STEPS = 1  # accept the previous and the next time step (clock drift, typing time)
SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300
ISSUER_LABEL = "kefu"
METHODS = ("totp", "sso")
_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


class StepUpRequired(Forbidden):
    """403: the route needs a fresh step-up token of the caller (header X-Kefu-Step-Up)."""

    code = "step_up_required"


# ---------------------------------------------------------------- TOTP (RFC 4226 / RFC 6238)


def new_secret() -> str:
    """A new random secret, base32 without padding (what authenticator apps take)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(key: bytes, counter: int, digits: int = DIGITS, algorithm: str = "SHA1") -> str:
    """RFC 4226: HMAC of the 8-byte counter, dynamic truncation, the low `digits` decimal digits."""
    mac = hmac.new(key, struct.pack(">Q", counter), _DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10 ** digits).zfill(digits)


def time_step(now: float | None = None, period: int = PERIOD_S) -> int:
    return int((time.time() if now is None else now) // period)


def totp(secret: str | bytes, now: float | None = None, *, digits: int = DIGITS, period: int = PERIOD_S,
         algorithm: str = "SHA1") -> str:
    """RFC 6238: HOTP of the number of `period`s since the Unix epoch. `secret`: base32 text or raw bytes."""
    key = secret if isinstance(secret, bytes) else _key(secret)
    return hotp(key, time_step(now, period), digits, algorithm)


def match_step(secret: str, code: str, now: float | None = None, *, after_step: int = -1) -> int | None:
    """The time step whose code `code` is (within DRIFT_STEPS of now, and later than `after_step`: a step that
    was used already never matches again), or None."""
    if not (isinstance(code, str) and len(code) == DIGITS and code.isdigit()):
        return None
    key = _key(secret)
    current = time_step(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if step > after_step and hmac.compare_digest(hotp(key, step), code):
            return step
    return None


def otpauth_uri(secret: str, workspace: str, agent_id: str) -> str:
    """The enrolment URI (Key Uri Format of Google Authenticator), shown once as text or a QR code."""
    label = quote(f"{ISSUER_LABEL}:{workspace}/{agent_id}", safe="")
    query = urlencode({"secret": secret, "issuer": ISSUER_LABEL, "algorithm": "SHA1", "digits": DIGITS,
                       "period": PERIOD_S})
    return f"otpauth://totp/{label}?{query}"


def failure_window(now: float | None = None) -> int:
    """The start (Unix seconds) of the fixed window failed attempts are counted in."""
    moment = int(time.time() if now is None else now)
    return moment - moment % FAILURE_WINDOW_S


# ---------------------------------------------------------------- step-up tokens


@dataclass(frozen=True)
class StepUp:
    workspace: str
    agent_id: str
    method: str  # "totp" or "sso"
    issued_at: int
    expires_at: int


def issue(secret: str, *, workspace: str, agent_id: str, method: str, ttl_s: int = STEP_UP_TTL_S,
          now: float | None = None) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    if not WORKSPACE_RE.match(workspace) or not ID_RE.match(agent_id):
        raise ValueError("invalid workspace or agent id")
    if not 0 < ttl_s <= STEP_UP_TTL_S:
        raise ValueError(f"a step-up token lives at most {STEP_UP_TTL_S} s")
    issued = int(time.time() if now is None else now)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "kind": KIND, "sub": agent_id, "ws": workspace, "amr": [method],
              "iat": issued, "exp": issued + ttl_s, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str | None, *, workspace: str, agent_id: str, now: float | None = None) -> StepUp:
    """The step-up a token proves for this agent of this workspace, or StepUpRequired (missing, expired,
    forged, another agent's or workspace's: the caller steps up again in every case)."""
    if not token:
        raise StepUpRequired(f"this needs a step-up verification: send {HEADER} (POST /workspaces/{{ws}}/step-up)")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "aud", "iss"], "verify_exp": now is None})
    except jwt.ExpiredSignatureError:
        raise StepUpRequired("the step-up verification has expired: verify again") from None
    except jwt.PyJWTError:
        raise StepUpRequired("invalid step-up token: verify again") from None
    if now is not None and claims["exp"] <= now:
        raise StepUpRequired("the step-up verification has expired: verify again")
    amr = claims.get("amr")
    if claims.get("kind") != KIND or not isinstance(amr, list) or len(amr) != 1 or amr[0] not in METHODS:
        raise StepUpRequired("invalid step-up token: verify again")
    if claims.get("ws") != workspace or claims.get("sub") != agent_id:
        raise StepUpRequired("this step-up token is not yours: verify again")
    if claims["exp"] - claims["iat"] > STEP_UP_TTL_S:
        raise StepUpRequired("invalid step-up token: verify again")
    return StepUp(workspace, agent_id, amr[0], int(claims["iat"]), int(claims["exp"]))
