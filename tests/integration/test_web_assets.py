"""The local stack serves web/ built: hashed assets immutable, pages and widget.js revalidated, unknown 404."""

from __future__ import annotations

import re

import pytest
import requests
from kefu_local import webbuild

pytestmark = pytest.mark.integration


def get(stack, path: str, **headers) -> requests.Response:
    return requests.get(stack.base_url + path, headers=headers, timeout=10)


def test_pages_name_hashed_assets_that_are_immutable(stack):
    page = get(stack, "/agent.html")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-cache"
    assert page.headers.get("ETag") and page.headers.get("Last-Modified")
    scripts = re.findall(r'<script src="(assets/[^"]+)"', page.text)
    styles = re.findall(r'<link rel="stylesheet" href="(assets/[^"]+)"', page.text)
    assert styles and any("kefu-client." in s for s in scripts)
    assert 'src="kefu-client.js"' not in page.text
    for path in scripts + styles:
        asset = get(stack, "/" + path)
        assert asset.status_code == 200, path
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable", path
        assert asset.headers.get("ETag"), path
        expected = "text/css" if path.endswith(".css") else "text/javascript"
        assert asset.headers["Content-Type"].startswith(expected), path


def test_revalidation_of_a_page_answers_304(stack):
    page = get(stack, "/customer.html")
    again = get(stack, "/customer.html", **{"If-None-Match": page.headers["ETag"]})
    assert again.status_code == 304


def test_widget_keeps_its_url_and_is_revalidated(stack):
    widget = get(stack, "/widget.js")
    assert widget.status_code == 200 and widget.headers["Cache-Control"] == "no-cache"
    assert "customer.html" in widget.text  # opens the (stable) customer page next to it
    assert get(stack, "/customer.html").status_code == 200
    assert get(stack, "/").headers["Cache-Control"] == "no-cache"


def test_manifest_lists_what_is_served(stack):
    manifest = get(stack, "/" + webbuild.MANIFEST)
    assert manifest.status_code == 200 and manifest.headers["Cache-Control"] == "no-cache"
    assets = manifest.json()
    assert "kefu-client.js" in assets and "app.css" in assets
    assert get(stack, "/" + assets["app.css"]).status_code == 200


def test_stale_hashes_logical_names_and_unknown_paths_are_404(stack):
    assets = get(stack, "/" + webbuild.MANIFEST).json()
    current = assets["kefu-client.js"]
    stale = re.sub(r"\.[0-9a-f]{10}\.js$", ".0000000000.js", current)
    assert stale != current
    assert get(stack, "/" + stale).status_code == 404
    assert get(stack, "/kefu-client.js").status_code == 404  # only the hashed name is served
    assert get(stack, "/nope.html").status_code == 404
    assert get(stack, "/../README.md").status_code == 404
    assert get(stack, "/" + webbuild.STAMP).status_code == 404


def test_swagger_ui_is_still_served(stack):
    assert get(stack, "/api-docs").status_code == 200
    assert get(stack, "/api-docs/openapi.json").status_code == 200
