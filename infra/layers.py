"""The two Lambda layers: the kefu domain package and the third-party dependencies.

The dependencies layer is built by *local* bundling (no Docker): pip downloads the
manylinux2014_aarch64 / CPython 3.13 wheels pinned in requirements.txt into the asset
folder. Bundling is skipped when the context says so (tests set
``aws:cdk:bundling-stacks`` to ``[]``), then the asset is just layers/dependencies/.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra import ROOT

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
PYTHON_VERSION = "3.13"
PIP_PLATFORM = "manylinux2014_aarch64"
REQUIREMENTS = ROOT / "requirements.txt"

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


@jsii.implements(ILocalBundling)
class PipInstallBundler:
    """Installs requirements.txt for the Lambda platform into ``<output_dir>/python``.

    When an interpreter of the runtime's version is available, the installed packages
    are also byte-compiled in ``unchecked-hash`` mode: Lambda's /opt is read-only and the
    asset zip resets mtimes, so without this every cold start recompiles (~0.5 s).
    """

    def __init__(self, requirements: Path, target_python: str | None) -> None:
        self.requirements = requirements
        self.target_python = target_python

    def try_bundle(self, output_dir: str, *args, **kwargs) -> bool:  # jsii passes options positionally
        target = Path(output_dir) / "python"
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install",
                "-r", str(self.requirements),
                "--target", str(target),
                "--platform", PIP_PLATFORM,
                "--python-version", PYTHON_VERSION,
                "--implementation", "cp",
                "--only-binary=:all:",
                "--no-compile",
                "--disable-pip-version-check",
                "--quiet",
            ],
            check=True,
        )
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


def dependencies_asset_hash(requirements: Path, precompiled: bool) -> str:
    """Custom asset hash: the requirements and every option that changes the output."""
    digest = hashlib.sha256()
    digest.update(requirements.read_bytes())
    digest.update(f"|{PIP_PLATFORM}|{PYTHON_VERSION}|cp|precompiled={precompiled}|v1".encode())
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
            description="Third-party packages pinned in requirements.txt (cp313, manylinux2014_aarch64)",
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
