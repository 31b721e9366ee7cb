"""The web build: content-hashed asset names, rewritten references, the manifest, no-op rebuilds, errors."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from kefu_local import webbuild
from kefu_local.webbuild import BuildError, build, snapshot

ROOT = Path(__file__).resolve().parents[2]
HASHED = re.compile(r"^assets/(?:[\w.-]+/)*[\w.-]+\.[0-9a-f]{10}\.[a-z0-9]+$")


@pytest.fixture(autouse=True)
def no_vendored_files(monkeypatch):
    """The sites here are made up: the project's vendored npm files (webbuild.VENDOR) are not in them."""
    monkeypatch.setattr(webbuild, "VENDOR", {})


def site(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    src = tmp_path / "web"
    for name, content in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return src


PAGE = """<!doctype html><html><head>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="app.css">
<script src="kefu-client.js"></script>
<script type="module" src="console.js"></script>
</head><body>
<a href="kefu-client.js">the client</a> <a href="other.html?x=1#top">other</a> <a href="https://example.com/a.js">x</a>
<img src="img/logo.png" alt="">
<!-- <script src="gone.js"></script> -->
<script>
  const html = '<img src="' + url + '">';  // inline classic script: left alone
</script>
</body></html>
"""
FILES = {
    "agent.html": PAGE,
    "other.html": "<p>other</p>",
    "app.css": "body{background:url('img/logo.png')} @import \"theme.css\";",
    "theme.css": "p{color:red}",
    "kefu-client.js": "window.KefuClient = {};\n",
    "console.js": 'import { t } from "./i18n.js";\nimport "./console-inbox.js";\nexport const x = t("a");\n',
    "console-inbox.js": 'const m = await import("./i18n.js");\n',
    "i18n.js": "export function t(k) { return k; }\n",
    "widget.js": 'var url = new URL("customer.html", base);\n',
    "customer.html": "<p>customer</p>",
    "img/logo.png": b"\x89PNG\r\n\x1a\n-not-really",
    "data.json": "{}",
}


def test_build_hashes_assets_and_keeps_pages_widget_and_other_files(tmp_path):
    out = tmp_path / "out"
    manifest = build(site(tmp_path, FILES), out)
    assert set(manifest.assets) == {"app.css", "theme.css", "kefu-client.js", "console.js", "console-inbox.js",
                                    "i18n.js", "img/logo.png"}
    assert all(HASHED.match(name) for name in manifest.assets.values())
    assert manifest.assets["img/logo.png"].startswith("assets/img/logo.")
    assert set(manifest.stable) == {"agent.html", "other.html", "customer.html", "widget.js", "data.json",
                                    webbuild.MANIFEST}
    for name in manifest.files():
        assert (out / name).is_file(), name
    assert (out / "widget.js").read_text() == FILES["widget.js"]  # stable name, still finds customer.html
    assert json.loads((out / webbuild.MANIFEST).read_text()) == manifest.assets
    assert manifest.cache_control(manifest.assets["app.css"]) == "public, max-age=31536000, immutable"
    assert manifest.cache_control("agent.html") == manifest.cache_control("widget.js") == "no-cache"
    assert manifest.cache_control(webbuild.MANIFEST) == "no-cache"
    assert manifest.cache_control("app.css") is None  # the logical name of an asset is not served


def test_references_are_rewritten(tmp_path):
    out = tmp_path / "out"
    a = build(site(tmp_path, FILES), out).assets
    page = (out / "agent.html").read_text()
    assert f'<link rel="stylesheet" href="{a["app.css"]}">' in page
    assert f'<script src="{a["kefu-client.js"]}"></script>' in page
    assert f'<script type="module" src="{a["console.js"]}"></script>' in page
    assert f'<a href="{a["kefu-client.js"]}">' in page
    assert f'<img src="{a["img/logo.png"]}"' in page
    assert '<a href="other.html?x=1#top">' in page and 'href="https://example.com/a.js"' in page
    assert '<script src="gone.js"></script>' in page  # inside a comment: untouched, no error
    assert "'<img src=\"' + url + '\">'" in page  # inside a classic inline script: untouched
    css = (out / a["app.css"]).read_text()  # assets/app.<h>.css -> assets/img/logo.<h>.png: relative
    assert f"url('{a['img/logo.png'].removeprefix('assets/')}')" in css
    assert f'@import "{a["theme.css"].removeprefix("assets/")}"' in css
    console = (out / a["console.js"]).read_text()
    assert f'from "./{a["i18n.js"].removeprefix("assets/")}"' in console
    assert f'import "./{a["console-inbox.js"].removeprefix("assets/")}"' in console
    inbox = (out / a["console-inbox.js"]).read_text()
    assert f'import("./{a["i18n.js"].removeprefix("assets/")}")' in inbox


def test_names_are_stable_for_the_same_content_and_change_with_it(tmp_path):
    first = build(site(tmp_path / "a", FILES), tmp_path / "out-a")
    again = build(site(tmp_path / "b", FILES), tmp_path / "out-b")
    assert first.assets == again.assets and first.fingerprint == again.fingerprint
    changed = build(site(tmp_path / "c", {**FILES, "i18n.js": "export function t(k) { return '!' + k; }\n"}),
                    tmp_path / "out-c")
    differs = {name for name in FILES if first.assets.get(name) != changed.assets.get(name)}
    # i18n.js changed; the modules importing it carry its new name, so theirs change too; nothing else does
    assert differs == {"i18n.js", "console.js", "console-inbox.js"}


def test_modules_importing_each_other_share_a_cycle_hash(tmp_path):
    files = {"a.js": 'import "./b.js";\n', "b.js": 'import "./a.js";\n', "p.html": '<script type="module" src="a.js">'
                                                                                    "</script>"}
    out = tmp_path / "out"
    assets = build(site(tmp_path, files), out).assets
    assert f'import "./{assets["b.js"].removeprefix("assets/")}"' in (out / assets["a.js"]).read_text()
    assert f'import "./{assets["a.js"].removeprefix("assets/")}"' in (out / assets["b.js"]).read_text()
    again = build(site(tmp_path / "again", {**files, "b.js": 'import "./a.js";\n// changed\n'}), tmp_path / "o2")
    assert again.assets["a.js"] != assets["a.js"] and again.assets["b.js"] != assets["b.js"]


def test_rebuild_is_a_no_op_when_nothing_changed(tmp_path):
    src, out = site(tmp_path, FILES), tmp_path / "out"
    manifest = build(src, out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    time.sleep(0.01)
    start = time.perf_counter()
    assert build(src, out) == manifest
    assert time.perf_counter() - start < 0.5
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes
    # a change rewrites what changed, drops the old asset and leaves the rest alone (same ETag)
    (src / "theme.css").write_text("p{color:blue}")
    changed = build(src, out)
    assert changed.assets["theme.css"] != manifest.assets["theme.css"]
    assert not (out / manifest.assets["theme.css"]).exists()
    kept = out / manifest.assets["kefu-client.js"]
    assert changed.assets["kefu-client.js"] == manifest.assets["kefu-client.js"]
    assert kept.stat().st_mtime_ns == mtimes[kept]


@pytest.mark.parametrize("files, needle", [
    ({"p.html": '<script src="missing.js"></script>'}, "missing.js"),
    ({"p.html": '<link rel="stylesheet" href="css/nope.css">'}, "css/nope.css"),
    ({"a.js": 'import { x } from "./nope.js";\n'}, "nope.js"),
    ({"a.css": "div{background:url(../img/none.png)}"}, "none.png"),
])
def test_unknown_referenced_file_is_a_clear_error(tmp_path, files, needle):
    with pytest.raises(BuildError, match=re.escape(needle)) as error:
        build(site(tmp_path, files), tmp_path / "out")
    assert "not in web/" in str(error.value)


def test_vendored_files_are_hashed_and_a_missing_one_is_a_clear_error(tmp_path):
    (tmp_path / "node_modules" / "lib" / "dist").mkdir(parents=True)
    (tmp_path / "node_modules" / "lib" / "dist" / "lib.min.js").write_text("window.Lib = 1;\n")
    src = site(tmp_path, {"p.html": '<script src="vendor/lib.min.js"></script>'})
    vendor = {"vendor/lib.min.js": "node_modules/lib/dist/lib.min.js"}
    manifest = build(src, tmp_path / "out", vendor=vendor)
    assert manifest.assets["vendor/lib.min.js"].startswith("assets/vendor/lib.min.")
    assert manifest.assets["vendor/lib.min.js"] in (tmp_path / "out" / "p.html").read_text()
    with pytest.raises(BuildError, match="npm ci"):
        build(src, tmp_path / "out2", vendor={"vendor/x.js": "node_modules/x/x.js"})


def test_refuses_to_write_into_a_foreign_directory(tmp_path):
    src = site(tmp_path, FILES)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "precious.txt").write_text("keep me")
    with pytest.raises(BuildError, match="refusing"):
        build(src, tmp_path / "elsewhere")
    with pytest.raises(BuildError, match="outside"):
        build(src, src / "out")
    assert (tmp_path / "elsewhere" / "precious.txt").read_text() == "keep me"


def test_snapshots_are_shared_and_immutable(tmp_path):
    src, cache = site(tmp_path, FILES), tmp_path / "cache"
    first, manifest = snapshot(src, cache)
    assert snapshot(src, cache) == (first, manifest)
    (src / "i18n.js").write_text("export const t = (k) => k;\n")
    second, _ = snapshot(src, cache)
    assert second != first and (first / manifest.assets["i18n.js"]).is_file()  # the old one is left intact
    old = time.time() - webbuild.SNAPSHOT_KEEP_S - 10
    os.utime(first / webbuild.STAMP, (old, old))
    snapshot(src, cache)
    assert not first.exists() and second.exists()


def test_site_serves_the_current_build_and_follows_edits(tmp_path):
    src = site(tmp_path, {**FILES, "index.html": "<p>home</p>", "help/index.html": "<p>help</p>"})
    served = webbuild.Site(src, tmp_path / "cache", check_interval_s=0)
    _, manifest = served.refresh()
    assert served.lookup("/")[0].read_text() == "<p>home</p>"
    assert served.lookup("help")[0].read_text() == served.lookup("help/")[0].read_text() == "<p>help</p>"
    path, cache_control = served.lookup("agent.html")
    assert cache_control == "no-cache" and path.read_text().count("assets/") >= 4
    assert served.lookup(manifest.assets["app.css"])[1] == webbuild.IMMUTABLE
    assert served.lookup("app.css") is None and served.lookup("nope.html") is None
    assert served.lookup("assets/app.0123456789.css") is None
    (src / "app.css").write_text("body{color:green}")
    later = os.stat(src / "app.css").st_mtime_ns + 10_000_000
    os.utime(src / "app.css", ns=(later, later))
    path, _ = served.lookup("agent.html")  # a page request picks up the edit
    assert served.manifest.assets["app.css"] != manifest.assets["app.css"]
    assert served.manifest.assets["app.css"] in path.read_text()
    # a broken edit keeps the last good build
    (src / "agent.html").write_text('<script src="broken.js"></script>')
    assert served.lookup("agent.html") is not None and "broken.js" in served.last_error


def test_the_checkout_web_directory_builds(tmp_path, monkeypatch):
    monkeypatch.undo()  # with the project's vendored files (npm ci has installed them)
    manifest = build(ROOT / "web", tmp_path / "out")
    assert manifest.assets["vendor/uPlot.iife.min.js"].startswith("assets/vendor/uPlot.iife.min.")
    assert {"agent.html", "customer.html", "index.html", "widget.js"} <= set(manifest.stable)
    assert "kefu-client.js" in manifest.assets and "app.css" in manifest.assets
    for page in ("agent.html", "customer.html"):
        text = (tmp_path / "out" / page).read_text()
        assert manifest.assets["kefu-client.js"] in text and 'src="kefu-client.js"' not in text


def test_import_maps_and_inline_modules_are_rewritten(tmp_path):
    files = {
        "p.html": '<script type="importmap">{"imports": {"lib": "./vendor/lib.js", "x": "https://cdn/x.js"}}</script>\n'
                  '<script type="module">import { t } from "./i18n.js"; import lib from "lib";</script>\n'
                  "<style>body{background:url(bg.svg)}</style>",
        "vendor/lib.js": "export default 1;\n",
        "i18n.js": "export const t = 1;\n",
        "bg.svg": "<svg/>",
    }
    out = tmp_path / "out"
    a = build(site(tmp_path, files), out).assets
    page = (out / "p.html").read_text()
    assert f'"lib": "./{a["vendor/lib.js"]}"' in page and '"x": "https://cdn/x.js"' in page
    assert f'import {{ t }} from "./{a["i18n.js"]}"' in page and 'import lib from "lib"' in page
    assert f"url({a['bg.svg']})" in page
