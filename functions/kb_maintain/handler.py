"""Scheduled knowledge-base maintenance (EventBridge, daily): for every workspace with a knowledge base,
retire articles customers rate unhelpful and report the questions the bot could not answer, grouped
into candidate articles. One workspace's failure does not stop the others."""

from __future__ import annotations

from kefu import wiring
from kefu.logs import logger


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
def handler(event, context):
    done, failed = 0, []
    for workspace in wiring.knowledge_store().workspaces():
        try:
            report = wiring.maintainer().run(workspace)
            done += 1
            logger.info("kb maintained", extra={"workspace": workspace, "retired": len(report["retired"]),
                                                "misses": report["misses"], "candidates": len(report["candidates"])})
        except Exception:
            logger.exception("kb maintenance failed", extra={"workspace": workspace})
            failed.append(workspace)
    if failed:  # the invocation fails so the alarm on errors sees it; the others are done
        raise RuntimeError(f"maintenance failed for {len(failed)} workspace(s)")
    return {"workspaces": done}
