"""Build web/ into versioned, cache-friendly files (standard library only, deterministic, fast).

Every asset (``*.js``, ``*.mjs``, ``*.css``, images, fonts, source maps and the vendored npm files
of ``VENDOR``) is copied to ``assets/<dir>/<name>.<sha256[:10]>.<ext>``: its URL changes whenever
its bytes change, so it is served with ``Cache-Control: public, max-age=31536000, immutable``.
HTML pages, ``widget.js`` (third-party pages embed it with one script tag: its URL never changes),
``asset-manifest.json`` and any other file (JSON, text) keep their names and are served with
``Cache-Control: no-cache`` (the browser revalidates with the ETag / Last-Modified every time).

References are rewritten to the hashed names: ``src`` / ``href`` / ``srcset`` in HTML, ES module
``import`` / ``export ... from`` / ``import()`` / ``new URL(..., import.meta.url)`` in JS (also in
inline ``<script type="module">``), the paths of an inline ``<script type="importmap">``, ``url()`` and ``@import`` in CSS (also in ``<style>``). An asset
that references other assets is hashed after them (its hash covers their new names); modules that
import each other in a cycle share one hash over the cycle. A relative reference to a file that does
not exist is a ``BuildError`` naming the file and the reference (links, ``<a href>``, may point
anywhere: they are only rewritten when they name an asset).

``build(src, out)`` writes one directory (``kefu build-web --out DIR``; the CDK app deploys it);
``snapshot(src, cache)`` keeps immutable builds keyed by the inputs' hash, which concurrent processes
can share; ``Site`` is what the local gateway serves, rebuilt when web/ changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

# Vendored npm files: logical name in the site -> path in the checkout (`make setup` runs `npm ci`).
# Pages reference the logical name (<script src="vendor/chart.umd.min.js">); the build hashes it like
# any asset. Add the package to package.json too.
VENDOR: dict[str, str] = {
    # the supervisors' dashboard charts (console-dashboard.js): uPlot, MIT, ~50 kB, canvas
    "vendor/uPlot.iife.min.js": "node_modules/uplot/dist/uPlot.iife.min.js",
    "vendor/uPlot.min.css": "node_modules/uplot/dist/uPlot.min.css",
}
# Assets that keep their name: third-party pages embed the widget with one script tag.
STABLE = frozenset({"widget.js"})
HASHED_SUFFIXES = frozenset({
    ".js", ".mjs", ".css", ".map", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".avif", ".ico",
    ".woff", ".woff2", ".ttf", ".otf", ".wasm",
})
HTML_SUFFIXES = frozenset({".html", ".htm"})
ASSETS_DIR = "assets"
MANIFEST = "asset-manifest.json"
STAMP = ".webbuild.json"  # the build's own record (fingerprint + manifest); not deployed
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
HASH_LENGTH = 10
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__"})
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".map": "application/json",
                 ".json": "application/json", ".svg": "image/svg+xml", ".woff2": "font/woff2", ".wasm": "application/wasm"}


class BuildError(ValueError):
    """The web sources cannot be built (a reference to a missing file, a missing vendored file, ...)."""


@dataclass(frozen=True)
class Manifest:
    """What a build holds: ``assets`` maps a logical name (``app.css``) to its hashed file
    (``assets/app.0123456789.css``); ``stable`` lists the files served under their own names."""

    assets: dict[str, str]
    stable: tuple[str, ...]
    fingerprint: str
    _hashed: frozenset = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_hashed", frozenset(self.assets.values()))

    def files(self) -> list[str]:
        return sorted(set(self.stable) | self._hashed)

    def cache_control(self, path: str) -> str | None:
        """Cache-Control of a file of the build (relative path), None when the build has no such file."""
        if path in self._hashed:
            return IMMUTABLE
        if path in self.stable:
            return NO_CACHE
        return None

    def to_json(self) -> dict:
        return {"fingerprint": self.fingerprint, "assets": self.assets, "stable": list(self.stable)}

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        return cls(dict(data["assets"]), tuple(data["stable"]), data["fingerprint"])


def content_type(path: str) -> str:
    import mimetypes

    suffix = posixpath.splitext(path)[1].lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


# ------------------------------------------------------------------ inputs


@dataclass
class _Inputs:
    files: dict[str, Path]  # logical name -> source file
    data: dict[str, bytes]
    fingerprint: str


def _walk(src: Path):
    for directory, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith("~"):
                continue
            path = Path(directory, name)
            yield path.relative_to(src).as_posix(), path


def _sources(src: Path, vendor: dict[str, str] | None, root: Path | None) -> dict[str, Path]:
    src = Path(src)
    if not src.is_dir():
        raise BuildError(f"{src} is not a directory")
    files = dict(_walk(src))
    root = Path(root) if root is not None else src.parent
    for logical, relative in sorted((VENDOR if vendor is None else vendor).items()):
        path = root / relative
        if logical in files:
            raise BuildError(f"vendored {logical} ({relative}) clashes with {src / logical}")
        if not path.is_file():
            raise BuildError(f"vendored file {logical} needs {path}, which is missing: run `make setup` (npm ci) "
                             "and check the package is in package.json")
        files[logical] = path
    return files


def _builder_id() -> bytes:
    return Path(__file__).read_bytes()


def _read_inputs(src: Path, vendor: dict[str, str] | None, root: Path | None) -> _Inputs:
    files = _sources(src, vendor, root)
    digest = hashlib.sha256(hashlib.sha256(_builder_id()).digest())
    data = {}
    for logical in sorted(files):
        content = files[logical].read_bytes()
        data[logical] = content
        digest.update(logical.encode() + b"\0" + hashlib.sha256(content).digest())
    return _Inputs(files, data, digest.hexdigest())


# ------------------------------------------------------------------ references

_SKIP_SCHEME = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//|#|\{|\$)")  # http:, data:, //cdn, #id, templates
_JS_PATTERNS = (
    # import x from "./a.js", import {a} from "./a.js", export * from "./a.js", import "./a.js"
    re.compile(r"""(?<![.$\w])(?:import|export)\s*(?:[\w*${}\s,]+?\s*from\s*)?(["'])(?P<spec>[^"'\n]+)\1"""),
    re.compile(r"""(?<![.$\w])import\s*\(\s*(["'])(?P<spec>[^"'\n]+)\1\s*\)"""),
    re.compile(r"""\bnew\s+URL\(\s*(["'])(?P<spec>[^"'\n]+)\1\s*,\s*import\.meta\.url\s*\)"""),
)
_SOURCE_MAP = re.compile(r"""(?://|/\*)[#@]\s*sourceMappingURL=(?P<spec>[^\s*'"]+)""")
_CSS_PATTERNS = (
    re.compile(r"""url\(\s*(["']?)(?P<spec>[^"')\s]+)\1\s*\)"""),
    re.compile(r"""@import\s+(["'])(?P<spec>[^"'\n]+)\1"""),
)
_IMPORTMAP_VALUE = re.compile(r':\s*"(?P<spec>(?:\.{1,2}/|/(?!/))[^"]*)"')
_ATTRS = r"""(?:[^>"']|"[^"]*"|'[^']*')*"""
_HTML_TOKEN = re.compile(
    r"<!--.*?-->"
    rf"|<(?P<raw>script|style)\b(?P<rawattrs>{_ATTRS})>(?P<body>.*?)</(?P=raw)\s*>"
    rf"|<(?P<tag>[a-zA-Z][\w-]*)\b(?P<attrs>{_ATTRS})>",
    re.DOTALL | re.IGNORECASE,
)
_ATTR = re.compile(r"""(?P<name>[\w:-]+)(?:\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<uq>[^\s"'>]+)))?""")
_STRICT_LINK_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "apple-touch-icon", "manifest"}
_STRICT_SRC_TAGS = {"script", "img", "source", "audio", "video", "track", "embed", "input"}


@dataclass
class _Ref:
    start: int
    end: int
    spec: str
    strict: bool
    module: bool = False  # a JS module specifier: must stay relative ("./x.js"), never bare


def _js_refs(text: str, offset: int = 0) -> list[_Ref]:
    refs = []
    for pattern in _JS_PATTERNS:
        for m in pattern.finditer(text):
            spec = m.group("spec")
            if spec.startswith(("./", "../", "/")) and not spec.startswith("//"):
                refs.append(_Ref(offset + m.start("spec"), offset + m.end("spec"), spec, True, True))
    for m in _SOURCE_MAP.finditer(text):
        refs.append(_Ref(offset + m.start("spec"), offset + m.end("spec"), m.group("spec"), False))
    return refs


def _css_refs(text: str, offset: int = 0) -> list[_Ref]:
    return [_Ref(offset + m.start("spec"), offset + m.end("spec"), m.group("spec"), True)
            for pattern in _CSS_PATTERNS for m in pattern.finditer(text)]


def _attributes(attrs: str, offset: int):
    for m in _ATTR.finditer(attrs):
        for group in ("dq", "sq", "uq"):
            if m.group(group) is not None:
                yield m.group("name").lower(), m.group(group), offset + m.start(group), offset + m.end(group)
                break
        else:
            yield m.group("name").lower(), "", -1, -1


def _html_refs(text: str) -> list[_Ref]:
    refs: list[_Ref] = []
    for m in _HTML_TOKEN.finditer(text):
        if m.group("raw"):
            raw = m.group("raw").lower()
            attrs = list(_attributes(m.group("rawattrs"), m.start("rawattrs")))
            values = {name: value for name, value, _, _ in attrs}
            if raw == "script":
                for name, value, start, end in attrs:
                    if name == "src":
                        refs.append(_Ref(start, end, value, True))
                kind = values.get("type", "").strip().lower()
                if "src" not in values and kind == "module":
                    refs.extend(_js_refs(m.group("body"), m.start("body")))
                elif "src" not in values and kind == "importmap":  # {"imports": {"chart": "./vendor/chart.js"}}
                    refs.extend(_Ref(m.start("body") + v.start("spec"), m.start("body") + v.end("spec"),
                                     v.group("spec"), True, True) for v in _IMPORTMAP_VALUE.finditer(m.group("body")))
            else:
                refs.extend(_css_refs(m.group("body"), m.start("body")))
            continue
        tag = (m.group("tag") or "").lower()
        if not tag:
            continue  # a comment
        attrs = list(_attributes(m.group("attrs"), m.start("attrs")))
        rel = {name: value for name, value, _, _ in attrs}.get("rel", "").lower().split()
        for name, value, start, end in attrs:
            if start < 0:
                continue
            if name == "src":
                refs.append(_Ref(start, end, value, tag in _STRICT_SRC_TAGS))
            elif name == "href":
                refs.append(_Ref(start, end, value, tag == "link" and bool(_STRICT_LINK_RELS & set(rel))))
            elif name == "srcset":
                position = 0
                for candidate in value.split(","):
                    url = candidate.strip().split(" ")[0]
                    if url:
                        at = value.index(url, position)
                        refs.append(_Ref(start + at, start + at + len(url), url, True))
                        position = at + len(url)
    return refs


def _refs(logical: str, text: str) -> list[_Ref]:
    suffix = posixpath.splitext(logical)[1].lower()
    if suffix in HTML_SUFFIXES:
        found = _html_refs(text)
    elif suffix in (".js", ".mjs"):
        found = _js_refs(text)
    elif suffix == ".css":
        found = _css_refs(text)
    else:
        return []
    return sorted((r for r in found if r.spec.strip() and not _SKIP_SCHEME.match(r.spec.strip())),
                  key=lambda r: r.start)


def _split(spec: str) -> tuple[str, str]:
    for i, char in enumerate(spec):
        if char in "?#":
            return spec[:i], spec[i:]
    return spec, ""


def _resolve(owner: str, path: str) -> str:
    """The logical name a reference from ``owner`` names ("dir/" and "" name an index.html)."""
    joined = path.lstrip("/") if path.startswith("/") else posixpath.join(posixpath.dirname(owner), path)
    resolved = posixpath.normpath(unquote(joined)) if joined else "."
    if resolved == ".":
        return "index.html"
    if joined.endswith("/"):
        return posixpath.join(resolved, "index.html")
    return resolved


# ------------------------------------------------------------------ build


def _hashed_name(logical: str, digest: str) -> str:
    directory, name = posixpath.split(logical)
    stem, ext = posixpath.splitext(name)
    return posixpath.join(ASSETS_DIR, directory, f"{stem}.{digest[:HASH_LENGTH]}{ext}")


def _is_hashed(logical: str) -> bool:
    return logical not in STABLE and posixpath.splitext(logical)[1].lower() in HASHED_SUFFIXES


def _decode(logical: str, data: bytes) -> str | None:
    if posixpath.splitext(logical)[1].lower() not in HTML_SUFFIXES | {".js", ".mjs", ".css"}:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _plan(inputs: _Inputs) -> tuple[dict[str, bytes], Manifest]:
    """Output files (relative path -> bytes) and the manifest, from the inputs alone."""
    texts = {logical: _decode(logical, data) for logical, data in inputs.data.items()}
    refs: dict[str, list[tuple[_Ref, str | None]]] = {}
    for logical, text in texts.items():
        if text is None:
            continue
        resolved = []
        for ref in _refs(logical, text):
            path, _ = _split(ref.spec.strip())
            target = _resolve(logical, path) if path else None
            if target is not None and target not in inputs.data:
                if ref.strict:
                    raise BuildError(f"{logical}: {ref.spec!r} names {target}, which is not in web/ "
                                     f"(nor in VENDOR of {Path(__file__).name})")
                target = None
            resolved.append((ref, target))
        refs[logical] = resolved

    hashed = sorted(logical for logical in inputs.data if _is_hashed(logical))
    out_name: dict[str, str] = {logical: logical for logical in inputs.data if not _is_hashed(logical)}
    edges = {logical: sorted({t for _, t in refs.get(logical, ()) if t is not None and _is_hashed(t)})
             for logical in hashed}

    def render(logical: str, names: dict[str, str], location: str) -> bytes:
        text = texts.get(logical)
        if text is None or not refs.get(logical):
            return inputs.data[logical]
        parts, last = [], 0
        for ref, target in refs[logical]:
            if target is None:
                continue
            _, suffix = _split(ref.spec.strip())
            new = names[target]
            if ref.spec.lstrip().startswith("/"):
                value = "/" + new
            else:
                value = posixpath.relpath(new, posixpath.dirname(location) or ".")
                if ref.module and not value.startswith("../"):
                    value = "./" + value
            parts += [text[last:ref.start], quote(value, safe="/.-_~@") + suffix]
            last = ref.end
        parts.append(text[last:])
        return "".join(parts).encode("utf-8")

    outputs: dict[str, bytes] = {}
    for component in _components(hashed, edges):  # dependencies first
        members = sorted(component)
        if len(members) == 1 and members[0] not in edges[members[0]]:
            logical = members[0]
            placeholder = dict(out_name)
            content = render(logical, placeholder, _hashed_name(logical, "0" * HASH_LENGTH))
            out_name[logical] = _hashed_name(logical, hashlib.sha256(content).hexdigest())
            outputs[out_name[logical]] = content
            continue
        # modules importing each other: one hash over the cycle (its sources and what it imports)
        digest = hashlib.sha256()
        for logical in members:
            digest.update(logical.encode() + b"\0" + render(logical, {**out_name, **{m: m for m in members}},
                                                            _hashed_name(logical, "0" * HASH_LENGTH)))
        for logical in members:
            out_name[logical] = _hashed_name(logical, hashlib.sha256(digest.digest() + logical.encode()).hexdigest())
        for logical in members:
            outputs[out_name[logical]] = render(logical, out_name, out_name[logical])
    for logical in sorted(inputs.data):
        if not _is_hashed(logical):
            outputs[logical] = render(logical, out_name, logical)
    assets = {logical: out_name[logical] for logical in hashed}
    for logical in inputs.data:
        if not _is_hashed(logical) and logical.startswith(ASSETS_DIR + "/"):
            raise BuildError(f"web/{logical}: {ASSETS_DIR}/ holds the hashed assets only (immutable, never pruned)")
    if MANIFEST in outputs:
        raise BuildError(f"web/{MANIFEST} is reserved for the build's manifest")
    outputs[MANIFEST] = (json.dumps(assets, indent=2, sort_keys=True) + "\n").encode()
    stable = tuple(sorted(logical for logical in inputs.data if not _is_hashed(logical)) + [MANIFEST])
    return outputs, Manifest(assets, tuple(sorted(stable)), inputs.fingerprint)


def _components(nodes: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components, each after every component it depends on (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = edges.get(node, [])
            if i < len(children):
                work.append((node, i + 1))
                child = children[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(component)
    return result


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _read_stamp(out: Path) -> Manifest | None:
    try:
        return Manifest.from_json(json.loads((out / STAMP).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build(src: Path, out: Path, *, vendor: dict[str, str] | None = None, root: Path | None = None) -> Manifest:
    """Build ``src`` (web/) into ``out``. A no-op when the inputs (and this builder) are unchanged since the
    last build into ``out``; otherwise unchanged files are not rewritten (their mtimes, hence the ETags,
    stay) and files of earlier builds are removed. ``vendor`` (default ``VENDOR``) paths are relative to
    ``root`` (default: the parent of ``src``, the checkout)."""
    src, out = Path(src).resolve(), Path(out).resolve()
    if out == src or src in out.parents or out in src.parents:
        raise BuildError(f"the output {out} must be outside {src} (and not contain it)")
    inputs = _read_inputs(src, vendor, root)
    previous = _read_stamp(out)
    if previous is not None and previous.fingerprint == inputs.fingerprint \
            and all((out / name).is_file() for name in previous.files()):
        return previous
    if previous is None and out.is_dir() and any(out.iterdir()):
        raise BuildError(f"refusing to build into {out}: not empty and not an earlier web build")
    outputs, manifest = _plan(inputs)
    for name, data in outputs.items():
        path = out / name
        try:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                continue
        except OSError:
            pass
        _write_atomic(path, data)
    for name, path in list(_walk(out)):
        if name not in outputs:
            path.unlink()
    for directory, _, _ in sorted(os.walk(out), reverse=True):
        if Path(directory) != out and not any(Path(directory).iterdir()):
            Path(directory).rmdir()
    _write_atomic(out / STAMP, json.dumps(manifest.to_json(), sort_keys=True).encode())
    return manifest


def fingerprint(src: Path, *, vendor: dict[str, str] | None = None, root: Path | None = None) -> str:
    return _read_inputs(Path(src).resolve(), vendor, root).fingerprint


# ------------------------------------------------------------------ shared, immutable builds

SNAPSHOT_KEEP_S = 24 * 3600


def snapshot(src: Path, cache: Path, *, vendor: dict[str, str] | None = None,
             root: Path | None = None) -> tuple[Path, Manifest]:
    """The build of ``src``'s current inputs, in ``cache/<fingerprint[:16]>``, built if missing. Builds are
    never modified once made (built aside, then renamed into place), so processes from the same checkout
    (a test run, `make dev`, a synth) share them safely while someone edits web/. Builds unused for a day
    are removed."""
    cache = Path(cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    key = fingerprint(src, vendor=vendor, root=root)[:16]
    target = cache / key
    manifest = _read_stamp(target)
    if manifest is None:
        tmp = cache / f".tmp-{key}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            built = build(src, tmp, vendor=vendor, root=root)
            try:
                os.rename(tmp, target)
            except OSError:  # another process made it meanwhile (same inputs, same bytes)
                if _read_stamp(target) is None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        manifest = _read_stamp(target) or built
    else:
        os.utime(target / STAMP)
    _collect_garbage(cache, keep=target)
    return target, manifest


def _collect_garbage(cache: Path, keep: Path) -> None:
    now = time.time()
    for entry in cache.iterdir():
        if entry == keep or not entry.is_dir():
            continue
        try:
            stamp = entry / STAMP
            used = stamp.stat().st_mtime if stamp.exists() else entry.stat().st_mtime
        except OSError:
            continue
        limit = 3600 if entry.name.startswith(".tmp-") else SNAPSHOT_KEEP_S
        if now - used > limit:
            shutil.rmtree(entry, ignore_errors=True)


class Site:
    """The built web/ the local gateway serves: a snapshot, rebuilt when web/ changes (checked at most every
    ``check_interval_s``, when a page or another stable file is requested, by file sizes and mtimes). A
    rebuild that fails keeps the last good build and logs why (``last_error``)."""

    TOUCH_INTERVAL_S = 3600  # mark the snapshot in use, so that other processes' clean-ups keep it

    def __init__(self, src: Path, cache: Path, *, vendor: dict[str, str] | None = None, root: Path | None = None,
                 check_interval_s: float = 1.0):
        self.src = Path(src).resolve()
        self.cache = Path(cache)
        self.vendor = vendor
        self.root = root
        self.check_interval_s = check_interval_s
        self.current: tuple[Path, Manifest] | None = None
        self.last_error: str | None = None
        self._signature = None
        self._checked = 0.0
        self._touched = 0.0
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path | None:
        return self.current[0] if self.current else None

    @property
    def manifest(self) -> Manifest | None:
        return self.current[1] if self.current else None

    def _stat_signature(self):
        entries = []
        for name, path in _walk(self.src):
            stat = path.stat()
            entries.append((name, stat.st_mtime_ns, stat.st_size))
        root = Path(self.root) if self.root is not None else self.src.parent
        for logical, relative in sorted((VENDOR if self.vendor is None else self.vendor).items()):
            try:
                stat = (root / relative).stat()
                entries.append((logical, stat.st_mtime_ns, stat.st_size))
            except OSError:
                entries.append((logical, None, None))
        return tuple(entries)

    def refresh(self, *, force: bool = False) -> tuple[Path, Manifest]:
        """Build if web/ changed since the last look; raises BuildError only when there is no build yet."""
        with self._lock:
            now = time.monotonic()
            if not force and self.current is not None and now - self._checked < self.check_interval_s:
                return self.current
            self._checked = now
            try:
                signature = self._stat_signature()
                if force or self.current is None or signature != self._signature \
                        or not (self.current[0] / STAMP).is_file():
                    self.current = snapshot(self.src, self.cache, vendor=self.vendor, root=self.root)
                    self._signature = signature
                    self._touched = now
                    self.last_error = None
                elif now - self._touched > self.TOUCH_INTERVAL_S:
                    os.utime(self.current[0] / STAMP)
                    self._touched = now
            except (BuildError, OSError) as error:
                if self.current is None:
                    raise
                if str(error) != self.last_error:
                    import logging

                    logging.getLogger("kefu.webbuild").error("web build failed, serving the last good one: %s", error)
                self.last_error = str(error)
            return self.current

    def lookup(self, path: str) -> tuple[Path, str] | None:
        """(file, Cache-Control) for a request path of the site ("" and "dir/" mean index.html), or None."""
        path = path.lstrip("/")
        if path == "" or path.endswith("/"):
            path += "index.html"
        directory, manifest = self.current if self.current is not None else self.refresh()
        if manifest.cache_control(path) is None and manifest.cache_control(path + "/index.html") == NO_CACHE:
            path += "/index.html"
        if manifest.cache_control(path) == NO_CACHE:
            directory, manifest = self.refresh()  # a page: pick up edits of web/ (its assets come with it)
        cache_control = manifest.cache_control(path)
        if cache_control is None:
            return None
        if not (directory / path).is_file():  # removed under us (a clean-up, by hand): build again
            directory, manifest = self.refresh(force=True)
            if manifest.cache_control(path) is None:
                return None
        return directory / path, cache_control
