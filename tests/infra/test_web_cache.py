"""The web content is deployed built (kefu_local.webbuild): hashed assets immutable and never pruned, pages,
widget.js and the manifest revalidated, and the pages' deployment neither uploads nor prunes assets/."""

from __future__ import annotations

import json
import re

from kefu_local import webbuild


def _deployments(synthesized) -> dict[str, tuple[str, dict]]:
    found = {}
    for logical, resource in synthesized.of_type("Custom::CDKBucketDeployment").items():
        props = resource["Properties"]
        found[props["SystemMetadata"]["cache-control"]] = (logical, props, resource.get("DependsOn", []))
    return found


def _staged(synthesized, props) -> set[str]:
    (key,) = props["SourceObjectKeys"]
    folder = synthesized.outdir / f"asset.{key.removesuffix('.zip')}"
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_web_cache_control(synthesized):
    deployments = _deployments(synthesized)
    assert set(deployments) == {webbuild.IMMUTABLE, webbuild.NO_CACHE}
    assert webbuild.IMMUTABLE == "public, max-age=31536000, immutable" and webbuild.NO_CACHE == "no-cache"
    assets_id, assets, _ = deployments[webbuild.IMMUTABLE]
    _, pages, pages_depends_on = deployments[webbuild.NO_CACHE]

    # assets: under assets/, kept for pages loaded before a deploy, no invalidation needed (new names)
    assert assets["DestinationBucketKeyPrefix"] == "assets/"
    assert assets["Prune"] is False
    assert "DistributionId" not in assets
    staged_assets = _staged(synthesized, assets)
    assert staged_assets and all(re.search(r"\.[0-9a-f]{10}\.[a-z0-9]+$", name) for name in staged_assets)

    # pages: at the root, pruned, but the sync excludes assets/ (neither uploaded nor deleted)
    assert pages.get("DestinationBucketKeyPrefix", "/") == "/"
    assert pages.get("Prune", True) is True
    assert pages["Exclude"] == ["assets/*"]
    staged_pages = _staged(synthesized, pages)
    assert {"widget.js", "agent.html", "customer.html", "index.html", webbuild.MANIFEST} <= staged_pages
    assert not any(name.startswith("assets/") or name == webbuild.STAMP for name in staged_pages)
    assert {f"/{name}" for name in staged_pages} <= set(pages["DistributionPaths"])
    assert not any(path.startswith("/assets") or "*" in path for path in pages["DistributionPaths"])
    assert assets_id in pages_depends_on  # a page is never live before the assets it names

    # what the pages reference is what the assets deployment uploads
    manifest = (synthesized.outdir / f"asset.{pages['SourceObjectKeys'][0].removesuffix('.zip')}" / webbuild.MANIFEST)
    hashed = json.loads(manifest.read_text()).values()
    assert {name.removeprefix("assets/") for name in hashed} == staged_assets
