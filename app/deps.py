"""Dependency aliases so route signatures read like plain typed parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.runtime import BundleManager
from app.service import RecommendationService
from app.settings import Settings
from feature_store.errors import InvalidRequest


def get_service(request: Request) -> RecommendationService:
    service: RecommendationService = request.app.state.service
    return service


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_bundles(request: Request) -> BundleManager:
    bundles: BundleManager = request.app.state.bundles
    return bundles


ServiceDep = Annotated[RecommendationService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BundlesDep = Annotated[BundleManager, Depends(get_bundles)]


def check_k(k: int | None, settings: Settings) -> int:
    """The requested list length, within the configured maximum."""
    if k is None:
        return settings.default_k
    if k > settings.max_k:
        raise InvalidRequest(f"k: must be at most {settings.max_k}")
    return k
