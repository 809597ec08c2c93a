from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.deps import BundlesDep, ServiceDep
from app.experiments import experiments_now
from app.runtime import RejectedBundle
from app.schemas import (
    AttributionReport,
    BanditReport,
    ErrorResponse,
    ExperimentList,
    ExperimentReport,
)
from models.bundle import list_bundles

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/models", summary="Published bundle versions and the one being served")
def models(bundles: BundlesDep) -> dict[str, Any]:
    """Every published version, the one being served, and the versions refused because they
    could not be loaded (each with why and when; polling does not retry them, a reload does)."""
    serving = bundles.current.version if bundles.loaded else None
    rejected = {r.version: r for r in bundles.rejected}
    return {
        "serving": serving,
        "versions": [
            {
                "version": info.version,
                "created": info.manifest.get("created"),
                "item_count": info.manifest.get("item_count"),
                "metrics": info.manifest.get("metrics", {}),
                "rejected": info.version in rejected,
            }
            for info in list_bundles(bundles.bundle_dir)
        ],
        "rejected": [_rejected(r) for r in rejected.values()],
    }


@router.post("/reload", summary="Load the newest published bundle now")
async def reload(bundles: BundlesDep, service: ServiceDep) -> dict[str, Any]:
    """Serve the newest bundle that loads, retrying versions rejected before. A bundle that
    cannot be loaded is listed under ``rejected`` (200: the bundle being served keeps serving)."""
    swapped = await run_in_threadpool(bundles.refresh, True)
    if bundles.loaded:
        service.metrics.set_model(bundles.current.version)
    body: dict[str, Any] = {
        "reloaded": swapped,
        "serving": bundles.current.version if bundles.loaded else None,
    }
    if bundles.rejected:
        body["rejected"] = [_rejected(r) for r in bundles.rejected]
    return body


def _rejected(rejected: RejectedBundle) -> dict[str, Any]:
    return {"version": rejected.version, "reason": rejected.reason, "at": rejected.at.isoformat()}


@router.get(
    "/attribution",
    response_model=AttributionReport,
    summary="Impressions, clicks, add-to-carts, purchases and revenue per source, surface, variant",
)
def attribution(service: ServiceDep) -> dict[str, Any]:
    """Counts since the attribution store was created (shared by replicas with Redis): one row
    per source × surface × variant, with click-through, add-to-cart and conversion rates per
    impression. Events echoing ``recommendation_id`` and ``position`` are credited to the source
    of that position; a purchase also to an attributed click or add-to-cart of the same item by
    the same customer within the attribution window."""
    return service.attribution.report()


@router.get(
    "/experiments",
    response_model=ExperimentList,
    summary="The A/B experiments of the experiments file, their windows and variants",
)
def experiments(service: ServiceDep) -> dict[str, Any]:
    """Every experiment of ``LOOKBOOK_EXPERIMENTS_FILE`` (none without one): its surface,
    window, whether it is running now, and its variants with their shares and overrides."""
    feeds = service.feeds
    return {"experiments": feeds.experiments.listing(experiments_now(feeds.clock))}


@router.get(
    "/experiments/{name}",
    response_model=ExperimentReport,
    responses={404: {"model": ErrorResponse}},
    summary="Per-variant results of an experiment with 95 % intervals and tests against control",
)
def experiment(name: str, service: ServiceDep) -> dict[str, Any]:
    """Per variant (attribution counters summed over sources): impressions, click-through,
    add-to-cart and conversion rates with Wilson intervals and revenue per 1,000 impressions with
    a normal interval; for each non-control variant the difference to control with its interval
    and p-value (pooled two-proportion z-test for rates, Welch's t-test for revenue). An unknown
    experiment is a 404 ``not_found``."""
    feeds = service.feeds
    return feeds.experiments.report(
        name, service.attribution_store.counts(), experiments_now(feeds.clock)
    )


@router.get(
    "/bandit",
    response_model=BanditReport,
    summary="The bandit's arms: posterior and share of recent traffic per surface, segment, source",
)
def bandit(service: ServiceDep) -> dict[str, Any]:
    """Every arm of every strategy (its prior from the strategy's weights) and every arm with
    evidence: posterior mean reward per impression with its 95 % credible interval, decayed
    impressions and rewards of the lists the bandit ranked, and its share of its (surface,
    segment)'s recent impressions. Also sets ``lookbook_bandit_weight``."""
    return service.bandit_report()
