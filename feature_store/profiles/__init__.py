"""Customer profiles: RFM tiers, lifecycle stages, size and style profiles, lifetime value.

Computed in batch by the trainer (:func:`compute_profiles` → :class:`CustomerProfiles`) and kept
current online event by event (:func:`apply_event`, :class:`LiveProfiles`). The service loads the
batch from the bundle; per-customer online state (a JSON-ready dict, :func:`new_state`) lives in a
:class:`ProfileStateStore`; events update it, reads render it with the batch thresholds.
Definitions: :mod:`.scoring` (RFM, tiers, stages, LTV) and :mod:`.batch` (sizes, affinities,
consent).
"""

from __future__ import annotations

from .batch import compute_profiles
from .config import ProfileConfig
from .events import Catalog, ChurnScorer, EventTable, customer_activity
from .live import InMemoryProfileStates, LiveProfiles, ProfileStateStore
from .online import apply_event, new_state, preferred_size, render_state, revoke_personalization
from .scoring import RfmThresholds, lifetime_value, stage_codes, stage_of, tier_codes
from .store import CustomerProfiles
from .vocabulary import FACETS, STAGES, TIERS

__all__ = [
    "FACETS",
    "STAGES",
    "TIERS",
    "Catalog",
    "ChurnScorer",
    "CustomerProfiles",
    "EventTable",
    "InMemoryProfileStates",
    "LiveProfiles",
    "ProfileConfig",
    "ProfileStateStore",
    "RfmThresholds",
    "apply_event",
    "compute_profiles",
    "customer_activity",
    "lifetime_value",
    "new_state",
    "preferred_size",
    "render_state",
    "revoke_personalization",
    "stage_codes",
    "stage_of",
    "tier_codes",
]
