from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.deps import BundlesDep, ServiceDep
from app.experiments import experiments_now
from app.runtime import BundleManager, RejectedBundle
from app.schemas import (
    AttributionReport,
    BanditReport,
    BundleVersionView,
    ErrorResponse,
    ExperimentList,
    ExperimentReport,
    ModelsReport,
)
from models.bundle import BundleInfo, list_bundles

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get(
    "/models",
    response_model=ModelsReport,
    summary="Published bundle versions, the one being served and the pin",
)
def models(bundles: BundlesDep) -> dict[str, Any]:
    """Every published version, the one being served (with when it was trained), the pin shared
    by every replica (``pinned``: null while they follow the newest bundle; ``pin_problem``: why
    it is not followed), and the versions refused because they failed a check (each with the
    check, why and when; polling tries one again only when its files change, a reload always)."""
    return _models_view(bundles)


@router.post("/reload", summary="Load the newest published bundle now")
async def reload(bundles: BundlesDep) -> dict[str, Any]:
    """Serve the newest bundle that passes its checks (or the pinned one), retrying versions
    rejected before. A bundle that fails is listed under ``rejected`` (200: the bundle being
    served keeps serving)."""
    swapped = await run_in_threadpool(bundles.refresh, True)
    body: dict[str, Any] = {
        "reloaded": swapped,
        "serving": bundles.current.version if bundles.loaded else None,
    }
    if bundles.rejected:
        body["rejected"] = [_rejected(r) for r in bundles.rejected]
    return body


@router.post(
    "/models/{version}/activate",
    response_model=ModelsReport,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary="Pin a version: every replica serves it (rollback) until it is unpinned",
)
async def activate(version: str, bundles: BundlesDep) -> dict[str, Any]:
    """Check ``version`` (even one rejected before) and serve it here at once; then write the
    pin into the bundles folder, which every replica follows within its poll interval. An
    unpublished version is a 404 ``unknown_bundle``; one that fails its checks a 422
    ``bundle_rejected`` with the reason (the pin is not changed)."""
    await run_in_threadpool(bundles.activate, version)
    return _models_view(bundles)


@router.delete(
    "/models/pin",
    response_model=ModelsReport,
    summary="Unpin: every replica follows the newest bundle again",
)
async def unpin(bundles: BundlesDep) -> dict[str, Any]:
    """Remove the pin (a no-op without one) and serve the newest bundle that passes its checks
    here at once; every replica follows within its poll interval."""
    await run_in_threadpool(bundles.unpin)
    return _models_view(bundles)


def _models_view(bundles: BundleManager) -> dict[str, Any]:
    current = bundles.current if bundles.loaded else None
    rejected = {r.version: r for r in bundles.rejected}
    pin = bundles.pin
    return {
        "serving": current.version if current is not None else None,
        "serving_trained_at": current.manifest.created.isoformat() if current else None,
        "pinned": None
        if pin is None
        else {"version": pin.version, "pinned_at": pin.pinned_at.isoformat()},
        "pin_problem": bundles.pin_problem,
        "versions": [
            _version(
                info, info.version in rejected, pin is not None and info.version == pin.version
            )
            for info in list_bundles(bundles.bundle_dir)
        ],
        "rejected": [_rejected(r) for r in rejected.values()],
    }


def _version(info: BundleInfo, rejected: bool, pinned: bool) -> dict[str, Any]:
    """A published version as listed; what its manifest says is shown only when it is well
    formed (a broken manifest is explained under ``rejected``, never a 5xx here)."""
    manifest = info.manifest
    listed = {"version": info.version, "rejected": rejected, "pinned": pinned}
    try:
        return BundleVersionView.model_validate(
            {
                **listed,
                "created": manifest.get("created"),
                "item_count": manifest.get("item_count"),
                "metrics": manifest.get("metrics", {}),
            }
        ).model_dump()
    except ValidationError:
        return {**listed, "created": None, "item_count": None, "metrics": {}}


def _rejected(rejected: RejectedBundle) -> dict[str, Any]:
    return {
        "version": rejected.version,
        "check": rejected.check,
        "reason": rejected.reason,
        "at": rejected.at.isoformat(),
    }


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
