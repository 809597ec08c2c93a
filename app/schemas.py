"""Response shapes (for the OpenAPI docs and tests; bodies are serialised with orjson directly)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    source: str = Field(description="which candidate source put the item here (als, popular, ...)")
    reason: str = Field(description="human-readable explanation")
    name: str
    category: str
    price: float
    size: str | None = Field(None, description="the customer's size for this item, when known")


class RecommendationList(BaseModel):
    recommendation_id: str = Field(description="echo it (with the position) in events")
    model_version: str
    surface: str
    customer_id: str | None = None
    item_id: str | None = None
    fallback: bool = Field(description="true when popular items filled a list that came up short")
    items: list[RecommendedItem]


class ComplementaryItem(RecommendedItem):
    pairs_with: str = Field(description="the anchor / basket item this one pairs with best")


class Slot(BaseModel):
    category: str
    items: list[ComplementaryItem]


class ComplementaryList(BaseModel):
    recommendation_id: str = Field(description="echo it (with the position) in events")
    model_version: str
    surface: str
    customer_id: str | None = None
    item_id: str | None = Field(None, description="the anchor item (single-item requests)")
    basket: list[str] = Field(description="the items completed, as given (duplicates removed)")
    compatibility: float | None = Field(
        None, description="how well the basket goes together (two or more items; higher = better)"
    )
    personalized: bool
    fallback: bool
    slots: list[Slot]


class SeasonalList(RecommendationList):
    date: str = Field(description="first day of the 4-week window (YYYY-MM-DD)")
    season: str | None = None
    weather: str | None = None
    personalized: bool


class RejectedEvent(BaseModel):
    index: int
    code: str
    message: str


class EventsAccepted(BaseModel):
    accepted: int
    rejected: list[RejectedEvent]


class Readiness(BaseModel):
    status: str = Field(description='"ready"')
    model_version: str
    cache: str = Field(description="cache backend")
    cache_available: bool
    auth: str = Field(
        description='"open: no API keys configured" (anyone may call) or "api keys: <count>"'
    )


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class PersonalizedList(RecommendationList):
    segment: str = Field(description="the customer's strategy segment (default without consent)")
    personalized: bool = Field(description="false when the customer withheld consent")
    strategy_surface: str = Field(description="the strategy surface asked for (home, email)")


class ExperimentTag(BaseModel):
    name: str = Field(description="the experiment the request was assigned in")
    variant: str = Field(description="its variant (sticky per customer or session id)")


class PersonalizedListInExperiment(PersonalizedList):
    """A feed in an A/B experiment: the feed's body and the ``experiment`` field."""

    experiment: ExperimentTag


class SessionListInExperiment(RecommendationList):
    """A session's list in an A/B experiment: the list's body and the ``experiment`` field."""

    experiment: ExperimentTag


class Rfm(BaseModel):
    recency_days: int | None
    frequency: int
    monetary: float
    r_score: int | None
    f_score: int | None
    m_score: int | None


class SizeShare(BaseModel):
    size: str
    share: float


class CustomerSize(BaseModel):
    size: str
    confidence: float
    alternatives: list[SizeShare]


class Affinity(BaseModel):
    value: str
    score: float


class CustomerProfile(BaseModel):
    customer_id: str
    as_of: str
    tier: str
    stage: str
    rfm: Rfm
    first_purchase: str | None
    last_purchase: str | None
    sizes: dict[str, CustomerSize] = Field(description="per category: size, confidence, others")
    affinities: dict[str, list[Affinity]] = Field(description="per facet: top values")
    churn_risk: float | None
    churn_horizon_days: int | None
    churn_as_of: str | None
    lifetime_value: float
    personalization_consent: bool
    updated_online: bool
    segment: str
    model_version: str


class SegmentCounts(BaseModel):
    as_of: str
    customers: int
    tiers: dict[str, int]
    stages: dict[str, int]


class SegmentCustomer(BaseModel):
    customer_id: str
    tier: str
    stage: str
    r_score: int | None
    f_score: int | None
    m_score: int | None
    recency_days: int | None
    frequency: int
    monetary: float
    churn_risk: float | None
    lifetime_value: float
    last_purchase: str | None


class SegmentPage(BaseModel):
    segment: str
    min_churn_risk: float | None
    customers: list[SegmentCustomer]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: last")


class AttributionRow(BaseModel):
    source: str = Field(description="the candidate source that filled the positions")
    surface: str = Field(description="personalized, session, similar, complementary, seasonal")
    variant: str | None = Field(None, description="experiment variant (null outside experiments)")
    impressions: int = Field(description="positions shown")
    clicks: int
    add_to_carts: int
    purchases: int
    revenue: float = Field(description="attributed purchases: event price, else catalog price")
    click_through_rate: float | None = Field(description="clicks / impressions")
    add_to_cart_rate: float | None = Field(description="add-to-carts / impressions")
    conversion_rate: float | None = Field(description="purchases / impressions")


class AttributionReport(BaseModel):
    attribution_window_days: float = Field(
        description="a purchase this long after an attributed click / add-to-cart is credited"
    )
    rows: list[AttributionRow]
    unattributed: dict[str, int] = Field(
        description="echoes left unattributed, by reason: unknown_id (unknown or expired), "
        "no_position, bad_position (outside the list), other_item (the position holds another)"
    )


class ExperimentVariant(BaseModel):
    name: str
    share: float = Field(description="share of the experiment's traffic")
    control: bool
    label: str = Field(description="<experiment>:<variant>, the variant in records and counters")
    strategy_override: bool = Field(description="true when the variant has its own strategy")
    weights: dict[str, float] | None = Field(description="source weights the variant overrides")
    rrf_k: float | None = Field(description="the variant's fusion constant (null: the strategy's)")
    bandit_enabled: bool | None = Field(description="bandit on / off (null: service default)")
    exploration: float | None = Field(description="bandit exploration (null: service default)")


class Experiment(BaseModel):
    name: str
    surface: str = Field(description="feed surface (home, email, …) or session")
    description: str | None
    start: str
    end: str = Field(description="assignment runs in [start, end)")
    running: bool
    variants: list[ExperimentVariant]


class ExperimentList(BaseModel):
    experiments: list[Experiment]


class Interval(BaseModel):
    difference: float | None
    low: float | None = Field(description="95 % interval of the difference")
    high: float | None
    p_value: float | None


class Estimate(BaseModel):
    value: float | None
    low: float | None = Field(description="95 % interval (null without impressions)")
    high: float | None
    vs_control: Interval | None = Field(None, description="this variant minus control")


class VariantResults(BaseModel):
    name: str
    control: bool
    share: float
    impressions: int = Field(description="positions shown")
    clicks: int
    add_to_carts: int
    purchases: int
    revenue: float
    click_through_rate: Estimate = Field(description="Wilson interval; pooled z-test vs control")
    add_to_cart_rate: Estimate
    conversion_rate: Estimate = Field(description="attributed purchases / impressions")
    revenue_per_1000: Estimate = Field(
        description="revenue per 1,000 impressions: normal interval; Welch t-test vs control"
    )


class ExperimentReport(BaseModel):
    name: str
    surface: str
    description: str | None
    start: str
    end: str
    running: bool
    variants: list[VariantResults]


class BanditArm(BaseModel):
    surface: str = Field(description="strategy surface (home, email)")
    segment: str
    source: str = Field(description="the candidate source this arm is")
    mean: float = Field(description="posterior mean reward per impression (revenue: currency)")
    low: float = Field(description="95 % credible interval, lower end")
    high: float = Field(description="95 % credible interval, upper end")
    impressions: float = Field(description="decayed positions shown in bandit-ranked lists")
    rewards: float = Field(description="decayed rewards (clicks, add-to-carts, purchases, revenue)")
    traffic_share: float = Field(
        description="its share of the (surface, segment)'s decayed impressions"
    )


class BanditReport(BaseModel):
    enabled: bool = Field(description="on by default for requests (a variant may override it)")
    reward: str
    exploration: float
    exploration_by_surface: dict[str, float]
    half_life_days: float | None
    prior_strength: float
    arms: list[BanditArm]


class BundleVersionView(BaseModel):
    version: str
    created: str | None = Field(description="when it was trained (null: manifest unreadable)")
    item_count: int | None
    metrics: dict[str, dict[str, float]]
    rejected: bool = Field(description="it failed a check (see rejected)")
    pinned: bool


class RejectedBundleView(BaseModel):
    version: str
    check: str = Field(
        description="the check it failed: manifest, format, missing_file, checksum, load, "
        "counts, scores, index, feeds"
    )
    reason: str
    at: str


class PinView(BaseModel):
    version: str
    pinned_at: str


class ModelsReport(BaseModel):
    serving: str | None = Field(description="the version this replica serves")
    serving_trained_at: str | None
    pinned: PinView | None = Field(
        description="the version every replica serves (null: they follow the newest)"
    )
    pin_problem: str | None = Field(description="why the pin is not followed, when it is not")
    versions: list[BundleVersionView]
    rejected: list[RejectedBundleView]


class SizeOption(BaseModel):
    size: str
    p_small: float = Field(description="probability that this size is too small")
    p_fit: float = Field(description="probability that this size fits")
    p_large: float = Field(description="probability that this size is too large")
    stock: int | None = Field(
        description="units in the asked store (online when no store is asked); null: no stock data"
    )


class SizeAdvice(BaseModel):
    item_id: str
    personal: bool = Field(description="false: no customer, unknown customer or no consent")
    sizes: list[SizeOption] = Field(description="every offered size, smallest first")
    recommended: str | None = Field(description="the size to take (null for one-size items)")
    fit_probability: float | None
    bring_along: str | None = Field(description="the neighbouring size worth bringing too")
    runs: str = Field(description="small, true_to_size or large")
    evidence: str = Field(description="the item's size returns behind `runs`")
    reason: str
    model_version: str


# -- the fitting-room kiosk (app/kiosk.py) ------------------------------------------------------


def _fit_value(value: object) -> object:
    """``"too small"`` / ``"Too-Large"`` / ``"fits"`` → the API's ``too_small`` … spelling."""
    if isinstance(value, str):
        return value.strip().lower().replace(" ", "_").replace("-", "_")
    return value


class KioskCarried(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    size: str | None = Field(None, min_length=1, max_length=32, description="the size tried")
    fit: Literal["too_small", "fits", "too_large"] | None = Field(
        None, description='how the tried size fitted ("too small" / "fits" / "too large")'
    )

    _normalise_fit = field_validator("fit", mode="before")(_fit_value)


class KioskOutfitsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    items: list[KioskCarried] = Field(
        min_length=1, max_length=5, description="the items carried into the fitting room"
    )
    customer_id: str | None = Field(
        None,
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="loyalty card scanned: their sizes (with consent), nothing they bought",
    )
    occasion: str | None = Field(
        None,
        max_length=32,
        description="work, party, date, wedding, everyday, vacation or sport",
    )
    weather: str | None = Field(
        None, max_length=32, description="cold_snap, cold, mild, warm, heatwave or rain"
    )


class KioskSizeOption(BaseModel):
    size: str
    p_small: float
    p_fit: float
    p_large: float
    stock: int | None = Field(description="units of this size in the kiosk's store")


class KioskSizeAdvice(BaseModel):
    personal: bool
    recommended: str | None = Field(description="the size to take (null: one size)")
    fit_probability: float | None
    bring_along: str | None
    runs: str = Field(description="small, true_to_size or large")
    evidence: str
    reason: str
    sizes: list[KioskSizeOption]


class KioskCarriedItem(BaseModel):
    item_id: str
    name: str
    category: str
    price: float
    colour: str | None
    tried_size: str | None
    fit: str | None
    size_advice: KioskSizeAdvice


class KioskLocation(BaseModel):
    store_id: str = Field(description='"online" (the web shop) or another store')
    stock: int = Field(description="units there in the item's advised size")


class KioskItem(BaseModel):
    item_id: str
    name: str
    category: str
    price: float
    colour: str | None
    position: int = Field(description="echo it with the recommendation_id in events")
    score: float
    pairs_with: str = Field(description="the carried item it goes with best")
    size: str | None = Field(description="the size to take")
    size_stock: int = Field(description="units of that size in this store")
    bring_along: str | None = Field(description="the neighbouring size to bring too")
    bring_along_stock: int | None = Field(description="units of the neighbouring size here")
    fit_probability: float | None
    availability: Literal["in_store", "elsewhere"] = Field(
        description="in_store: on this store's shelves in that size; elsewhere: see locations"
    )
    locations: list[KioskLocation] = Field(description="where it is when not here (elsewhere)")
    reason: str


class KioskOutfit(BaseModel):
    outfit: int = Field(description="1, 2, 3: best first")
    compatibility: float | None = Field(description="set compatibility of carried + suggested")
    items: list[KioskItem]


class KioskOutfits(BaseModel):
    recommendation_id: str = Field(description="echo it (with the position) in events")
    model_version: str
    surface: str = Field(description='"kiosk"')
    store_id: str
    customer_id: str | None
    personalized: bool
    occasion: str | None
    season: str
    weather: str | None
    fallback: bool
    slots: list[str] = Field(description="the categories the outfits fill")
    carried: list[KioskCarriedItem]
    outfits: list[KioskOutfit]
    elsewhere: list[KioskItem] = Field(
        description="best matches not in this store in their size, with where they are"
    )


class KioskCartLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    size: str | None = Field(None, min_length=1, max_length=32)
    position: int | None = Field(None, ge=0, le=10_000, description="its position in the list")


class KioskCartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    store_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    recommendation_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=ID_PATTERN, description="of the kiosk list"
    )
    items: list[KioskCartLine] = Field(min_length=1, max_length=20)


class KioskCartAccepted(BaseModel):
    customer_id: str
    store_id: str
    accepted: int
    rejected: list[RejectedEvent]
