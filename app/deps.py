"""Dependency aliases so route signatures read like plain typed parameters: the settings, the
bundle manager, and the service's parts (``app.service``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.auth import KeyRing
from app.customers import Customers
from app.feeds import Feeds
from app.ingest import Ingest
from app.kiosk import KioskService
from app.list_options import DIVERSITY, PRICE, ListOptions
from app.look import LookService
from app.privacy import Privacy
from app.runtime import BundleManager
from app.service import RecommendationService
from app.settings import Settings
from app.size_advice import SizeAdvisor
from feature_store.errors import InvalidRequest


def _service(request: Request) -> RecommendationService:
    service: RecommendationService = request.app.state.service
    return service


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# The dependencies are ``async def``: each only reads app state (or validates query values), and
# a plain ``def`` dependency would cost a hop to the thread pool and back on every request.


async def get_service(request: Request) -> RecommendationService:
    return _service(request)


async def get_settings(request: Request) -> Settings:
    return _settings(request)


async def get_bundles(request: Request) -> BundleManager:
    bundles: BundleManager = request.app.state.bundles
    return bundles


async def get_api_keys(request: Request) -> KeyRing:
    keys: KeyRing = request.app.state.api_keys
    return keys


async def get_feeds(request: Request) -> Feeds:
    return _service(request).feeds


async def get_look(request: Request) -> LookService:
    return _service(request).look


async def get_customers(request: Request) -> Customers:
    return _service(request).customers


async def get_privacy(request: Request) -> Privacy:
    return _service(request).privacy


async def get_ingest(request: Request) -> Ingest:
    return _service(request).ingest


async def get_size_advice(request: Request) -> SizeAdvisor:
    return _service(request).size_advice


async def get_kiosk(request: Request) -> KioskService:
    return _service(request).kiosk


def list_route(request: Request) -> tuple[Feeds, Settings]:
    """The feeds and the settings, for a list route that reads its query in one pass
    (:mod:`app.query_params`) instead of through dependencies FastAPI solves one by one."""
    return _service(request).feeds, _settings(request)


async def get_list_options(
    request: Request,
    min_price: Annotated[float | None, Query(description=PRICE)] = None,
    max_price: Annotated[float | None, Query(description=PRICE)] = None,
    diversity: Annotated[float | None, Query(description=DIVERSITY)] = None,
) -> ListOptions:
    """``min_price``, ``max_price`` and ``diversity`` of a GET list request, validated (422
    ``validation_error``)."""
    return ListOptions.of(min_price, max_price, diversity, _settings(request).default_diversity)


ServiceDep = Annotated[RecommendationService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BundlesDep = Annotated[BundleManager, Depends(get_bundles)]
ApiKeysDep = Annotated[KeyRing, Depends(get_api_keys)]
FeedsDep = Annotated[Feeds, Depends(get_feeds)]
LookDep = Annotated[LookService, Depends(get_look)]
CustomersDep = Annotated[Customers, Depends(get_customers)]
PrivacyDep = Annotated[Privacy, Depends(get_privacy)]
IngestDep = Annotated[Ingest, Depends(get_ingest)]
ListOptionsDep = Annotated[ListOptions, Depends(get_list_options)]
SizeAdviceDep = Annotated[SizeAdvisor, Depends(get_size_advice)]
KioskDep = Annotated[KioskService, Depends(get_kiosk)]


def check_k(k: int | None, settings: Settings) -> int:
    """The requested list length, within the configured maximum."""
    if k is None:
        return settings.default_k
    if k > settings.max_k:
        raise InvalidRequest(f"k: must be at most {settings.max_k}")
    return k
