from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.deps import BundlesDep, ServiceDep
from models.bundle import list_bundles

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/models", summary="Published bundle versions and the one being served")
def models(bundles: BundlesDep) -> dict[str, Any]:
    serving = bundles.current.version if bundles.loaded else None
    return {
        "serving": serving,
        "versions": [
            {
                "version": info.version,
                "created": info.manifest.get("created"),
                "item_count": info.manifest.get("item_count"),
                "metrics": info.manifest.get("metrics", {}),
            }
            for info in list_bundles(bundles.bundle_dir)
        ],
    }


@router.post("/reload", summary="Load the newest published bundle now")
async def reload(bundles: BundlesDep, service: ServiceDep) -> dict[str, Any]:
    swapped = await run_in_threadpool(bundles.refresh)
    if bundles.loaded:
        service.metrics.set_model(bundles.current.version)
    return {"reloaded": swapped, "serving": bundles.current.version if bundles.loaded else None}
