"""Per-checkout local configuration: the token signing key that `kefu dev` and `kefu token`
share. It lives in .kefu/ at the top of the checkout (ignored by git); KEFU_HOME overrides."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def home() -> Path:
    path = Path(os.environ.get("KEFU_HOME") or ROOT / ".kefu")
    path.mkdir(parents=True, exist_ok=True)
    return path


def signing_key() -> str:
    path = home() / "local.json"
    if path.exists():
        data = json.loads(path.read_text())
        if len(data.get("jwt_signing_key", "")) >= 32:
            return data["jwt_signing_key"]
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"jwt_signing_key": key}))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key
