"""API Gateway's API key check for the local REST API: every route but schema.REST_PUBLIC_ROUTES
needs an `x-api-key` that is an enabled key of the integrators' usage plan (kept in moto's API
Gateway, where the api function creates them); otherwise 403 {"message": "Forbidden"}, as on AWS.
A key that passes is passed on as requestContext.identity.apiKey / apiKeyId. Usage plan
throttling and quotas are not emulated (on AWS their 429s come without Retry-After, unlike the api function's
own 429s: see docs/protocol.md, Errors)."""

from __future__ import annotations

import re
import threading
import time

from kefu import schema

REFRESH_S = 2.0


def _template(path: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(path)) + "$")


PUBLIC = [(method, _template(path)) for method, path in schema.REST_PUBLIC_ROUTES]


def is_public(method: str, path: str) -> bool:
    return method == "OPTIONS" or any(m == method and p.match(path) for m, p in PUBLIC)


class LocalApiKeys:
    def __init__(self, apigateway, usage_plan_id: str):
        self.apigateway = apigateway
        self.usage_plan_id = usage_plan_id
        self._by_value: dict[str, str] = {}
        self._loaded = 0.0
        self._lock = threading.Lock()

    def key_id(self, value: str | None) -> str | None:
        """The id of the enabled usage-plan key with this value, or None."""
        if not value:
            return None
        with self._lock:
            # a new key is found at once, a revoked one is refused within REFRESH_S
            if value not in self._by_value or time.monotonic() - self._loaded > REFRESH_S:
                self._load()
            return self._by_value.get(value)

    def _load(self) -> None:
        in_plan = set()
        for page in self.apigateway.get_paginator("get_usage_plan_keys").paginate(usagePlanId=self.usage_plan_id):
            in_plan |= {k["id"] for k in page.get("items", [])}
        keys = {}
        for page in self.apigateway.get_paginator("get_api_keys").paginate(includeValues=True):
            for key in page.get("items", []):
                if key.get("enabled") and key["id"] in in_plan:
                    keys[key["value"]] = key["id"]
        self._by_value = keys
        self._loaded = time.monotonic()
