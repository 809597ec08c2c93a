"""Known-answer tests of customer profiles: RFM, tiers, lifecycle, sizes, affinities, LTV, online
updates, segment paging, erasure, save/load — on tiny hand-made datasets."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from feature_store.dataset import Dataset
from feature_store.errors import BundleError, InvalidRequest
from feature_store.profiles import (
    STAGES,
    TIERS,
    CustomerProfiles,
    EventTable,
    InMemoryProfileStates,
    LiveProfiles,
    ProfileConfig,
    RfmThresholds,
    compute_profiles,
    lifetime_value,
    preferred_size,
    stage_codes,
    tier_codes,
)
from feature_store.schema import Interaction, InteractionType, ReturnReason

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
LETTER = ["XS", "S", "M", "L", "XL"]

ITEMS: dict[str, dict[str, Any]] = {
    "tee": {"category": "top", "price": 20.0, "styles": ["casual"], "colour": "white",
            "material": "cotton", "price_band": "budget", "sizes": LETTER},
    "shirt": {"category": "top", "price": 40.0, "styles": ["business", "classic"],
              "colour": "blue", "material": "linen", "price_band": "mid", "sizes": LETTER},
    "dress": {"category": "dress", "price": 80.0, "styles": ["party"], "colour": "red",
              "material": "silk", "price_band": "premium", "sizes": LETTER},
    "sneaker": {"category": "shoes", "price": 60.0, "styles": ["sport"], "colour": "white",
                "material": "leather", "price_band": "mid", "sizes": ["38", "39", "40", "41"]},
    "bag": {"category": "accessory", "price": 100.0, "styles": ["casual"], "colour": "black",
            "material": "leather", "price_band": "premium", "sizes": []},
}  # fmt: skip


def items_frame() -> pd.DataFrame:
    rows = [{"item_id": k, "name": k, **v} for k, v in ITEMS.items()]
    return pd.DataFrame(rows)


def event(
    customer: str,
    item: str,
    kind: str,
    when: datetime,
    *,
    size: str | None = None,
    price: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "item_id": item,
        "type": kind,
        "timestamp": when,
        "size": size,
        "price": price,
        "return_reason": reason,
        "channel": "online",
    }


def look(source: CustomerProfiles | LiveProfiles, customer_id: str) -> dict[str, Any]:
    """The profile of a customer who must exist (batch lookup or live profile at NOW)."""
    found = (
        source.profile(customer_id, NOW)
        if isinstance(source, LiveProfiles)
        else source.lookup(customer_id)
    )
    assert found is not None, customer_id
    return found


def tier_events() -> list[dict[str, Any]]:
    return [
        {str(k): v for k, v in row.items()}
        for row in tier_dataset().interactions.to_dict("records")
    ]


def dataset(events: list[dict[str, Any]], customers: pd.DataFrame | None = None) -> Dataset:
    frame = pd.DataFrame(events)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    if customers is None:
        return Dataset(items=items_frame(), interactions=frame)
    return Dataset(items=items_frame(), interactions=frame, customers=customers)


def buy(customer: str, days_ago: float, price: float = 10.0, item: str = "bag") -> dict[str, Any]:
    return event(customer, item, "purchase", NOW - days_ago * DAY, price=price)


# (customer, recency days, orders, total spend) → the tier these ranks must give (10 purchasers:
# a value is "high" when in the top 4, as the quintile edges put the 7th..10th into scores 4-5).
TIER_CASES = (
    ("c_hv", 1, 10, 1000.0, "high_value"),
    ("c_pot", 2, 1, 900.0, "potential"),
    ("c_als", 3, 9, 100.0, "active_low_spend"),
    ("c_shv", 200, 8, 800.0, "sleeping_high_value"),
    ("c_nlv", 4, 2, 200.0, "new_low_value"),
    ("c_atr", 300, 3, 700.0, "at_risk"),
    ("c_lap", 250, 7, 300.0, "lapsing_regular"),
    ("c_lost", 400, 4, 400.0, "lost"),
    ("c_x1", 350, 5, 500.0, "lost"),
    ("c_x2", 450, 6, 600.0, "lost"),
)


def tier_dataset() -> Dataset:
    events = []
    for customer, recency, orders, spend, _ in TIER_CASES:
        for k in range(orders):  # one order a day, the last ``recency`` days ago
            events.append(buy(customer, recency + k, spend / orders))
    events.append(event("c_prospect", "tee", "view", NOW - 2 * DAY))
    return dataset(events)


# --------------------------------------------------------------------------------------------
# RFM and tiers
# --------------------------------------------------------------------------------------------


def test_rfm_scores_are_quintiles_with_equal_values_equal_scores() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    thresholds = RfmThresholds.fit(values, values, values)
    assert thresholds.frequency == pytest.approx((1.8, 2.6, 3.4, 4.2))
    r, f, m = thresholds.scores(values, values, values)
    assert f.tolist() == [1, 2, 3, 4, 5]
    assert m.tolist() == [1, 2, 3, 4, 5]
    assert r.tolist() == [5, 4, 3, 2, 1]  # fewer days since the last purchase is better
    # Ties: equal values always get the same score, whatever their order.
    ties = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 3.0])
    t = RfmThresholds.fit(ties, ties, ties)
    _, f_tied, _ = t.scores(ties, ties, ties)
    assert len(set(f_tied[:4].tolist())) == 1 and f_tied[0] == 1
    assert f_tied[4] < f_tied[5]


def test_tier_of_every_score_combination() -> None:
    config = ProfileConfig()  # high = score >= 4
    cases = {
        (5, 5, 5): "high_value",
        (4, 1, 4): "potential",
        (5, 4, 3): "active_low_spend",
        (2, 5, 5): "sleeping_high_value",
        (5, 1, 1): "new_low_value",
        (1, 2, 4): "at_risk",
        (3, 4, 1): "lapsing_regular",
        (1, 1, 1): "lost",
    }
    r, f, m = (np.array([c[i] for c in cases], dtype=np.int8) for i in range(3))
    names = [TIERS[i] for i in tier_codes(r, f, m, config)]
    assert names == list(cases.values())
    low_bar = ProfileConfig(r_high=3, f_high=3, m_high=3)
    assert TIERS[int(tier_codes(r[:1] * 0 + 3, f[:1] * 0 + 3, m[:1] * 0 + 3, low_bar)[0])] == (
        "high_value"
    )


def test_compute_profiles_rfm_values_scores_and_named_tiers() -> None:
    profiles = compute_profiles(tier_dataset(), NOW, ProfileConfig())
    for customer, recency, orders, spend, tier in TIER_CASES:
        p = profiles.lookup(customer)
        assert p is not None
        assert p["tier"] == tier, customer
        assert p["rfm"]["recency_days"] == recency
        assert p["rfm"]["frequency"] == orders
        assert p["rfm"]["monetary"] == pytest.approx(spend)
    hv = profiles.lookup("c_hv")
    assert hv is not None and (hv["rfm"]["r_score"], hv["rfm"]["f_score"]) == (5, 5)
    assert hv["rfm"]["m_score"] == 5
    pot = profiles.lookup("c_pot")
    assert pot is not None and (pot["rfm"]["r_score"], pot["rfm"]["f_score"]) == (5, 1)
    prospect = profiles.lookup("c_prospect")
    assert prospect is not None
    assert prospect["tier"] == "prospect" and prospect["stage"] == "prospect"
    assert prospect["rfm"]["r_score"] is None and prospect["lifetime_value"] == 0.0
    # The scalar path of a lookup agrees with the batch columns for every customer.
    for row, customer in enumerate(profiles.customer_ids):
        p = look(profiles, str(customer))
        assert p["tier"] == TIERS[int(profiles.column("tier")[row])]
        assert p["stage"] == STAGES[int(profiles.column("stage")[row])]
        assert p["lifetime_value"] == pytest.approx(float(profiles.column("ltv")[row]), abs=0.006)
    counts = profiles.counts()
    assert counts["customers"] == 11
    assert counts["tiers"]["lost"] == 3 and counts["tiers"]["prospect"] == 1
    assert sum(counts["tiers"].values()) == sum(counts["stages"].values()) == 11


def test_frequency_counts_days_and_monetary_is_net_of_returns() -> None:
    events = [
        event("a", "shirt", "purchase", NOW - 10 * DAY, size="M", price=40.0),
        event("a", "tee", "purchase", NOW - 10 * DAY + timedelta(hours=2), size="M"),  # list 20
        event("a", "shirt", "return", NOW - 5 * DAY, size="M", price=40.0, reason="quality"),
        event("a", "dress", "purchase", NOW - 3 * DAY, size="S", price=70.0),
        event("a", "dress", "purchase", NOW + 3 * DAY, size="S", price=70.0),  # after now: ignored
    ]
    p = compute_profiles(dataset(events), NOW).lookup("a")
    assert p is not None
    assert p["rfm"]["frequency"] == 2  # two purchase days
    assert p["rfm"]["monetary"] == pytest.approx(40 + 20 - 40 + 70)
    assert p["rfm"]["recency_days"] == 3


# --------------------------------------------------------------------------------------------
# Lifecycle stages
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_days", "last_days", "stage"),
    [
        (30, 30, "new"),
        (31, 31, "active"),
        (30.9, 30.9, "new"),  # whole days: 30 days and 22 hours is 30 days
        (400, 90, "active"),
        (400, 90.95, "active"),
        (400, 91, "cooling"),
        (400, 179, "cooling"),
        (400, 180, "sleeping"),
        (400, 364, "sleeping"),
        (400, 365, "churned"),
        (None, None, "prospect"),
    ],
)
def test_lifecycle_boundaries(
    first_days: float | None, last_days: float | None, stage: str
) -> None:
    now_s = NOW.timestamp()
    first = math.nan if first_days is None else now_s - first_days * 86400
    last = math.nan if last_days is None else now_s - last_days * 86400
    code = stage_codes(np.array([first]), np.array([last]), now_s, ProfileConfig())[0]
    assert STAGES[int(code)] == stage
    if first_days is not None and last_days is not None:  # the same through compute_profiles
        events = [buy("c", first_days), buy("c", last_days)]
        p = compute_profiles(dataset(events), NOW).lookup("c")
        assert p is not None and p["stage"] == stage


def test_stage_day_counts_are_configurable() -> None:
    config = ProfileConfig(new_days=7, active_days=30, sleeping_days=60, churned_days=120)
    now_s = NOW.timestamp()
    days = np.array([5, 20, 45, 90, 150], dtype=float)
    codes = stage_codes(now_s - days * 86400 - 1e6, now_s - days * 86400, now_s, config)
    assert [STAGES[c] for c in codes] == ["active", "active", "cooling", "sleeping", "churned"]
    first_only = stage_codes(
        np.array([now_s - 7 * 86400]), np.array([now_s - 7 * 86400]), now_s, config
    )
    assert STAGES[int(first_only[0])] == "new"
    with pytest.raises(ValueError):
        ProfileConfig(active_days=200, sleeping_days=180)


# --------------------------------------------------------------------------------------------
# Size profiles
# --------------------------------------------------------------------------------------------

NO_DECAY = ProfileConfig(size_half_life_days=None, affinity_half_life_days=None)


def test_size_returns_shift_the_estimate_toward_the_next_size() -> None:
    t = NOW - 100 * DAY
    events = [
        # a: kept one M; two M came back too small → L (votes M 3-2 = 1, L 2)
        event("a", "tee", "purchase", t, size="M"),
        event("a", "tee", "purchase", t + DAY, size="M"),
        event("a", "shirt", "purchase", t + 2 * DAY, size="M"),
        event("a", "tee", "return", t + 5 * DAY, size="M", reason="too_small"),
        event("a", "shirt", "return", t + 6 * DAY, size="M", reason="too_small"),
        # b: L too large → M
        event("b", "shirt", "purchase", t, size="L"),
        event("b", "shirt", "return", t + 4 * DAY, size="L", reason="too_large"),
        # c: XL too small, no larger size offered → no estimate for tops; shoes kept 40
        event("c", "tee", "purchase", t, size="XL"),
        event("c", "tee", "return", t + 4 * DAY, size="XL", reason="too_small"),
        event("c", "sneaker", "purchase", t, size="40"),
        # d: a return for another reason keeps the size vote
        event("d", "tee", "purchase", t, size="S"),
        event("d", "tee", "return", t + 3 * DAY, size="S", reason="changed_mind"),
    ]
    profiles = compute_profiles(dataset(events), NOW, NO_DECAY)
    a = profiles.lookup("a")
    assert a is not None
    assert a["sizes"]["top"]["size"] == "L"
    assert a["sizes"]["top"]["confidence"] == pytest.approx(
        2 / 3 * (1 - math.exp(-3 / 2)), abs=1e-4
    )
    assert a["sizes"]["top"]["alternatives"] == [
        {"size": "M", "share": pytest.approx(1 / 3, abs=1e-4)}
    ]
    b = profiles.lookup("b")
    assert b is not None and b["sizes"]["top"]["size"] == "M"
    assert b["sizes"]["top"]["confidence"] == pytest.approx(1 - math.exp(-1 / 2), abs=1e-4)
    c = profiles.lookup("c")
    assert c is not None and "top" not in c["sizes"]
    assert c["sizes"]["shoes"]["size"] == "40"
    d = profiles.lookup("d")
    assert d is not None and d["sizes"]["top"]["size"] == "S"
    table = profiles.size_table().set_index(["customer_id", "category"])
    assert table.loc[("a", "top"), "size"] == "L"
    assert table.loc[("c", "shoes"), "size"] == "40"
    assert preferred_size(a, "top", ["M", "XL"]) == (
        "M",
        pytest.approx(a["sizes"]["top"]["confidence"] / 3, abs=1e-3),
    )
    assert preferred_size(a, "dress", ["M"]) is None


def test_size_votes_decay_and_weights_are_configurable() -> None:
    events = [
        event("a", "tee", "purchase", NOW - 400 * DAY, size="S"),
        event("a", "tee", "purchase", NOW - 390 * DAY, size="S"),
        event("a", "tee", "purchase", NOW - 10 * DAY, size="M"),
    ]
    # Without decay two old S beat one new M; with a 90-day half-life the new M wins.
    plain = compute_profiles(dataset(events), NOW, NO_DECAY)
    assert look(plain, "a")["sizes"]["top"]["size"] == "S"
    decayed = compute_profiles(dataset(events), NOW, ProfileConfig(size_half_life_days=90))
    assert look(decayed, "a")["sizes"]["top"]["size"] == "M"
    ret = [
        event("b", "tee", "purchase", NOW - 5 * DAY, size="M"),
        event("b", "tee", "return", NOW - 2 * DAY, size="M", reason="too_small"),
    ]
    keep_vote = ProfileConfig(
        size_half_life_days=None, size_return_weight=0.0, size_shift_weight=0.5
    )
    b = compute_profiles(dataset(ret), NOW, keep_vote).lookup("b")
    assert b is not None and b["sizes"]["top"]["size"] == "M"
    assert b["sizes"]["top"]["alternatives"][0]["size"] == "L"


def test_no_size_or_affinity_without_consent() -> None:
    customers = pd.DataFrame(
        {
            "customer_id": ["yes", "no"],
            "consent_personalization": pd.array([True, False], dtype="boolean"),
        }
    )
    events = [
        event(c, "tee", "purchase", NOW - 3 * DAY, size="M", price=20.0) for c in ("yes", "no")
    ]
    profiles = compute_profiles(dataset(events, customers), NOW)
    no = profiles.lookup("no")
    assert no is not None and no["sizes"] == {} and no["affinities"] == {}
    assert no["rfm"]["frequency"] == 1 and no["personalization_consent"] is False
    yes = profiles.lookup("yes")
    assert yes is not None and yes["sizes"]["top"]["size"] == "M" and yes["affinities"]
    excluded = compute_profiles(
        dataset(events, customers), NOW, ProfileConfig(consent_policy="exclude")
    )
    assert "no" not in excluded and "yes" in excluded and len(excluded) == 1


# --------------------------------------------------------------------------------------------
# Affinities and LTV
# --------------------------------------------------------------------------------------------


def test_affinities_decay_with_half_life_and_split_styles() -> None:
    events = [
        event("a", "tee", "purchase", NOW, price=20.0),  # casual, white, cotton, budget: 1
        event("a", "dress", "purchase", NOW - 90 * DAY, price=80.0),  # party, red, silk: 0.5
        event("a", "shirt", "view", NOW),  # business + classic share 0.1
    ]
    p = compute_profiles(dataset(events), NOW, ProfileConfig(affinity_half_life_days=90)).lookup(
        "a"
    )
    assert p is not None
    style = {a["value"]: a["score"] for a in p["affinities"]["style"]}
    total = 1 + 0.5 + 0.1
    assert style == pytest.approx(
        {"casual": 1 / total, "party": 0.5 / total, "business": 0.05 / total}, abs=1e-4
    )  # classic (0.05) ties business and loses on name order: top 3 shown
    colour = {a["value"]: a["score"] for a in p["affinities"]["colour"]}
    assert colour == pytest.approx(
        {"white": 1 / 1.6, "red": 0.5 / 1.6, "blue": 0.1 / 1.6}, abs=1e-4
    )
    assert [a["value"] for a in p["affinities"]["price_band"]] == ["budget", "premium", "mid"]
    # A non-size return counts against the item (−0.5); a size return does not.
    config = ProfileConfig(affinity_half_life_days=90)
    sized = [*events, event("a", "tee", "return", NOW, size="M", reason="too_small")]
    q = compute_profiles(dataset(sized), NOW, config).lookup("a")
    assert q is not None and q["affinities"] == p["affinities"]
    unliked = [*events, event("a", "tee", "return", NOW, reason="quality")]
    u = compute_profiles(dataset(unliked), NOW, config).lookup("a")
    assert u is not None
    style_u = {a["value"]: a["score"] for a in u["affinities"]["style"]}
    assert style_u["casual"] == pytest.approx(style_u["party"])
    assert style_u["casual"] == pytest.approx(0.5 / 1.1, abs=1e-4)


def test_lifetime_value_formula() -> None:
    config = ProfileConfig()
    now_s = NOW.timestamp()
    year_ago = now_s - 365.25 * 86400
    # AOV 100 × 3 orders a year × (90 / 365.25) × (1 − 0.5) / 0.5 years
    ltv = lifetime_value(300.0, 3, year_ago, now_s, 0.5, 90, config)
    assert float(ltv) == pytest.approx(100 * 3 * 90 / 365.25)
    # Short tenure is floored at 90 days; no churn risk → the default lifetime of 1 year.
    ltv_new = lifetime_value(50.0, 1, now_s - 10 * 86400, now_s, math.nan, None, config)
    assert float(ltv_new) == pytest.approx(50 * 365.25 / 90)
    capped = lifetime_value(100.0, 1, year_ago, now_s, 1e-9, 90, config)
    assert float(capped) == pytest.approx(100 * 1 * config.ltv_max_lifetime_years)
    assert float(lifetime_value(0.0, 0, math.nan, now_s, 0.2, 90, config)) == 0.0
    events = [buy("a", 365.25, 150.0), buy("a", 1, 150.0)]
    p = compute_profiles(dataset(events), NOW).lookup("a")
    assert p is not None and p["lifetime_value"] == pytest.approx(300 / 2 * 2 * 1.0, abs=0.01)


# --------------------------------------------------------------------------------------------
# Online updates
# --------------------------------------------------------------------------------------------


def item_attrs(item: str) -> dict[str, Any]:
    return {"item_id": item, **ITEMS[item]}


def test_online_purchase_updates_recency_stage_frequency_and_size_at_once() -> None:
    events = [
        event("a", "tee", "purchase", NOW - 400 * DAY, size="M", price=20.0),
        event("a", "tee", "purchase", NOW - 200 * DAY, size="M", price=20.0),
    ]
    profiles = compute_profiles(dataset(events), NOW, NO_DECAY)
    before = profiles.lookup("a")
    assert before is not None and before["stage"] == "sleeping"
    later = NOW + 1 * DAY
    state = profiles.state("a")
    buy_l = Interaction(customer_id="a", item_id="shirt", type=InteractionType.PURCHASE,
                        timestamp=later, size="L", price=40.0)  # fmt: skip
    state = profiles.apply_event(state, buy_l, item_attrs("shirt"), later)
    small = Interaction(customer_id="a", item_id="tee", type=InteractionType.RETURN,
                        timestamp=later, size="M", price=20.0,
                        return_reason=ReturnReason.TOO_SMALL)  # fmt: skip
    state = profiles.apply_event(state, small, item_attrs("tee"), later)
    after = profiles.render(state, later)
    assert after["stage"] == "active"
    assert after["rfm"]["recency_days"] == 0
    assert after["rfm"]["frequency"] == 3
    assert after["rfm"]["monetary"] == pytest.approx(40 + 40 - 20)
    assert after["rfm"]["r_score"] == 5  # scored with the batch edges
    # votes: M 2 − 1 (too small) = 1, L 1 (bought) + 1 (shifted) = 2
    assert after["sizes"]["top"]["size"] == "L"
    assert after["last_purchase"] == later.isoformat()
    assert after["updated_online"] is True
    assert profiles.lookup("a") == before  # the batch itself is unchanged


def test_online_view_updates_affinities_only_and_new_customer_becomes_new() -> None:
    profiles = compute_profiles(tier_dataset(), NOW)
    view = Interaction(
        customer_id="c_hv", item_id="dress", type=InteractionType.VIEW, timestamp=NOW
    )
    before = profiles.lookup("c_hv")
    after = profiles.render(
        profiles.apply_event(profiles.state("c_hv"), view, item_attrs("dress"), NOW), NOW
    )
    assert (
        before is not None and after["rfm"] == before["rfm"] and after["stage"] == before["stage"]
    )
    assert "party" in [a["value"] for a in after["affinities"]["style"]]
    first = Interaction(customer_id="newbie", item_id="sneaker", type=InteractionType.PURCHASE,
                        timestamp=NOW, size="40", price=60.0)  # fmt: skip
    state = profiles.apply_event(None, first, item_attrs("sneaker"), NOW)
    p = profiles.render(state, NOW)
    assert p["stage"] == "new" and p["tier"] != "prospect"
    assert p["rfm"]["frequency"] == 1 and p["sizes"]["shoes"]["size"] == "40"
    # Decay online matches batch: the same events applied one by one give the batch profile.
    evs = [
        event("z", "tee", "purchase", NOW - 100 * DAY, size="S", price=20.0),
        event("z", "dress", "purchase", NOW - 50 * DAY, size="M", price=80.0),
        event("z", "shirt", "view", NOW - 10 * DAY),
    ]
    batch = compute_profiles(dataset(evs), NOW).lookup("z")
    online: dict[str, Any] | None = None
    for e in evs:
        ev = Interaction(customer_id="z", item_id=e["item_id"], type=InteractionType(e["type"]),
                         timestamp=e["timestamp"], size=e["size"], price=e["price"])  # fmt: skip
        online = profiles.apply_event(online, ev, item_attrs(e["item_id"]), e["timestamp"])
    assert online is not None
    rendered = profiles.render(online, NOW)
    assert batch is not None
    assert rendered["affinities"] == batch["affinities"]
    assert rendered["sizes"] == batch["sizes"]
    assert rendered["rfm"]["monetary"] == batch["rfm"]["monetary"]


def test_live_profiles_next_read_shows_the_event_consent_and_erasure() -> None:
    profiles = compute_profiles(tier_dataset(), NOW)
    states = InMemoryProfileStates()
    live = LiveProfiles(profiles, states)
    assert live.profile("nobody", NOW) is None
    assert look(live, "c_lost")["stage"] == "churned"
    purchase = Interaction(customer_id="c_lost", item_id="tee", type=InteractionType.PURCHASE,
                           timestamp=NOW, size="M", price=20.0)  # fmt: skip
    live.apply(purchase, item_attrs("tee"), NOW)
    shown = live.profile("c_lost", NOW)
    assert shown is not None and shown["stage"] == "active" and shown["sizes"]["top"]["size"] == "M"
    live.set_consent("c_lost", False)
    revoked = live.profile("c_lost", NOW)
    assert revoked is not None and revoked["sizes"] == {} and revoked["affinities"] == {}
    assert revoked["stage"] == "active"  # CRM facts stay
    live.apply(purchase, item_attrs("tee"), NOW)
    assert look(live, "c_lost")["sizes"] == {}
    live.erase("c_lost")
    assert (
        live.profile("c_lost", NOW) is None and "c_lost" not in states and "c_lost" not in profiles
    )
    # Replaying events dated after the batch (e.g. the online store's recent list) re-seeds.
    late = purchase.model_copy(update={"customer_id": "c_pot", "timestamp": NOW + DAY})
    early = purchase.model_copy(update={"customer_id": "c_pot", "timestamp": NOW - 400 * DAY})
    replayed = live.replay("c_pot", [late, early], {"tee": item_attrs("tee")}, NOW + DAY)
    assert replayed is not None and replayed["rfm"]["frequency"] == 2  # the early one was in
    assert replayed["sizes"]["top"]["size"] == "M" and states.get("c_pot") is not None
    assert live.replay("nobody", [], {}, NOW) is None
    # A new batch: states seeded from the old one are ignored.
    live.apply(purchase.model_copy(update={"customer_id": "c_hv"}), item_attrs("tee"), NOW)
    live.swap(compute_profiles(tier_dataset(), NOW + DAY))
    renewed = live.profile("c_hv", NOW + DAY)
    assert renewed is not None and renewed["updated_online"] is False


# --------------------------------------------------------------------------------------------
# Segments, erasure, persistence
# --------------------------------------------------------------------------------------------


def paging_profiles() -> CustomerProfiles:
    # 25 customers whose one purchase was over a year ago (stage churned), 5 active ones.
    events = [buy(f"p{i:02d}", 400 + i, 5.0) for i in range(25)]
    events += [buy(f"h{i}", 1 + i, 500.0) for i in range(5)]
    return compute_profiles(dataset(events), NOW)


def collect(profiles: CustomerProfiles, name: str, limit: int, **kw: Any) -> list[str]:
    ids, cursor = [], None
    while True:
        page = profiles.list_segment(name, cursor=cursor, limit=limit, **kw)
        ids += [c["customer_id"] for c in page["customers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


def test_segment_paging_is_complete_ordered_and_stable_under_erasure() -> None:
    profiles = paging_profiles()
    expected = [f"p{i:02d}" for i in range(25)]
    assert collect(profiles, "churned", 10) == expected
    assert collect(profiles, "churned", 7) == expected
    for tier in TIERS:  # a tier name pages exactly the customers whose profile has that tier
        members = [str(c) for c in profiles.customer_ids if look(profiles, str(c))["tier"] == tier]
        assert collect(profiles, tier, 4) == members
    first = profiles.list_segment("churned", limit=10)
    assert [c["customer_id"] for c in first["customers"]] == expected[:10]
    assert first["customers"][0]["stage"] == "churned" and first["customers"][0]["frequency"] == 1
    # Erase one customer already listed and one still to come: the cursor continues correctly.
    profiles.erase("p03")
    profiles.erase("p12")
    second = profiles.list_segment("churned", cursor=first["next_cursor"], limit=10)
    assert [c["customer_id"] for c in second["customers"]] == [
        e for e in expected[10:21] if e != "p12"
    ]
    assert profiles.list_segment("churned", cursor=first["next_cursor"], limit=10) == second
    with pytest.raises(InvalidRequest):
        profiles.list_segment("high_value", cursor=first["next_cursor"])
    with pytest.raises(InvalidRequest):
        profiles.list_segment("churned", cursor="not-a-cursor")
    with pytest.raises(InvalidRequest):
        profiles.list_segment("vip")
    with pytest.raises(InvalidRequest):
        profiles.list_segment("churned", limit=0)
    assert collect(profiles, "prospect", 5) == []


def test_segment_filter_by_min_churn_risk() -> None:
    profiles = paging_profiles()

    class Scorer:
        horizon_days = 90

        def predict_activity(self, activity: pd.DataFrame, as_of: datetime) -> np.ndarray:
            ids = activity["customer_id"].to_numpy()
            return np.array([0.9 if str(c) in ("p01", "p05") else 0.2 for c in ids])

    with_risk = compute_profiles(EventTable.from_dataset(dataset(
        [buy(f"p{i:02d}", 400 + i, 5.0) for i in range(25)])), NOW, churn=Scorer())  # fmt: skip
    assert collect(with_risk, "churned", 1, min_churn_risk=0.5) == ["p01", "p05"]
    assert look(with_risk, "p01")["churn_risk"] == pytest.approx(0.9)
    assert collect(profiles, "churned", 10, min_churn_risk=0.5) == []  # no risk known: none


def _everything(profiles: CustomerProfiles) -> str:
    parts = [repr(profiles.counts()), repr(profiles.size_table().to_dict())]
    parts += [repr(profiles.lookup(str(c))) for c in profiles.customer_ids]
    for name in (*TIERS, *STAGES):
        parts.append(repr(collect(profiles, name, 3)))
    return "\n".join(parts)


def test_erase_removes_the_customer_everywhere(tmp_path: Path) -> None:
    events = tier_events()
    events.append(event("c_pot", "tee", "purchase", NOW - 2 * DAY, size="S", price=900.0))
    profiles = compute_profiles(dataset(events), NOW)
    others = {str(c): profiles.lookup(str(c)) for c in profiles.customer_ids if c != "c_pot"}
    assert "c_pot" in _everything(profiles)
    assert profiles.erase("c_pot") is True
    assert profiles.erase("c_pot") is False
    assert "c_pot" not in profiles and profiles.lookup("c_pot") is None
    assert profiles.state("c_pot") is None
    assert "c_pot" not in _everything(profiles)
    assert profiles.counts()["customers"] == 10 and profiles.counts()["tiers"]["potential"] == 0
    assert {str(c): profiles.lookup(str(c)) for c in profiles.customer_ids} == others
    profiles.save(tmp_path / "p")
    for file in (tmp_path / "p").iterdir():
        if file.suffix == ".parquet":
            assert "c_pot" not in repr(pq.read_table(file).to_pydict())
        else:
            assert "c_pot" not in file.read_text()
    assert "c_pot" not in _everything(CustomerProfiles.load(tmp_path / "p"))


def test_save_load_identity(tmp_path: Path) -> None:
    events = tier_events()
    events += [
        event("c_hv", "tee", "purchase", NOW - 1 * DAY, size="M", price=20.0),
        event("c_hv", "sneaker", "purchase", NOW - 1 * DAY, size="41", price=60.0),
        event("c_hv", "tee", "return", NOW, size="M", price=20.0, reason="too_large"),
    ]

    class Scorer:
        horizon_days = 60

        def predict_activity(self, activity: pd.DataFrame, as_of: datetime) -> np.ndarray:
            return np.linspace(0.1, 0.9, len(activity))

    profiles = compute_profiles(dataset(events), NOW, ProfileConfig(new_days=20), churn=Scorer())
    profiles.save(tmp_path / "profiles")
    loaded = CustomerProfiles.load(tmp_path / "profiles")
    assert _everything(loaded) == _everything(profiles)
    assert loaded.config == profiles.config and loaded.thresholds == profiles.thresholds
    assert loaded.as_of == profiles.as_of and loaded.churn_horizon_days == 60
    assert loaded.state("c_hv") == profiles.state("c_hv")
    assert sorted(p.name for p in (tmp_path / "profiles").iterdir()) == [
        "affinities.parquet", "customers.parquet", "profiles.json", "sizes.parquet"
    ]  # fmt: skip
    with pytest.raises(BundleError):
        CustomerProfiles.load(tmp_path / "missing")


def test_compute_profiles_is_deterministic_and_handles_categorical_ids() -> None:
    ds = tier_dataset()
    cat = ds.interactions.copy()
    cat["customer_id"] = cat["customer_id"].astype("category")
    cat["item_id"] = pd.Categorical(cat["item_id"], categories=ds.items["item_id"])
    a = compute_profiles(ds, NOW)
    b = compute_profiles(Dataset(items=ds.items, interactions=cat), NOW)
    assert _everything(a) == _everything(b)


# --------------------------------------------------------------------------------------------
# Online equals batch
# --------------------------------------------------------------------------------------------

# Truncation to the top ``size_keep`` / ``affinity_keep`` entries is a memory bound that differs
# by design: the batch keeps the top k of the final sums, the online state the top k after each
# event (a dropped label restarts from 0). Keeping every entry makes the two paths comparable.
KEEP_ALL = ProfileConfig(
    size_keep=1000,
    affinity_keep=1000,
    top_affinities=1000,
    size_half_life_days=365.0,
    affinity_half_life_days=90.0,
)


def interactions_of(frame: pd.DataFrame) -> list[Interaction]:
    """The rows of an interactions frame as API events, in time order (ties in file order)."""
    frame = frame.sort_values("timestamp", kind="stable")
    out = []
    for row in frame.to_dict("records"):
        fields = {k: v for k, v in row.items() if v is not None and not pd.isna(v)}
        out.append(Interaction.model_validate({k: str(v) if k.endswith("_id") else v
                                               for k, v in fields.items()}))  # fmt: skip
    return out


def test_online_replay_equals_the_batch_profiles(tmp_path: Path) -> None:
    """Batch at T0, the events of (T0, T1] applied one by one as the service does, rendered at
    T1: every field equals the batch profile computed at T1 over all events.

    Differences by design, left out or adjusted below:
    * ``updated_online`` says which path made the profile (True online, False batch);
    * RFM scores and tier: the online path scores with the thresholds of the batch it was seeded
      from (T0); re-rendered with the T1 batch's thresholds they must match exactly;
    * decayed quantities are multiplied step by step online and in one factor in batch: floats
      agree to 1e-9 relative (rounded outputs to their last digit).

    Known discrepancy (reported, not fixed: the fix changes what a saved state holds): a state
    keeps positive size votes only. A size return at or before T0 with no more purchases than
    returns in its (category, size) — bought then returned as too small/large, the return being
    the more recent and so the less decayed — nets to a negative vote the T0 state drops; the
    T1 batch still subtracts it from later purchases in that size, the online state does not.
    For those customers the winning sizes agree but confidences and shares differ.
    """
    from feature_store.loaders import load_dataset
    from feature_store.synthetic import generate

    generate(tmp_path, customers=120, items=60, seed=11, days=150)
    data = load_dataset(tmp_path)
    inter = data.interactions
    stamps = pd.to_datetime(inter["timestamp"], utc=True)
    assert (stamps.dt.microsecond == 0).all()  # the batch works in whole seconds
    t1 = stamps.max().to_pydatetime()
    t0 = t1 - timedelta(days=21)
    batch0 = compute_profiles(data, t0, KEEP_ALL)
    batch1 = compute_profiles(data, t1, KEEP_ALL)
    live = LiveProfiles(batch0)

    items = {str(r["item_id"]): r for r in data.items.to_dict("records")}
    consent = dict(
        zip(
            data.customers["customer_id"].astype(str),
            data.customers["consent_personalization"].astype("boolean").fillna(True),
            strict=True,
        )
    )
    later = interactions_of(inter[(stamps > pd.Timestamp(t0)).to_numpy()])
    kinds = {e.type for e in later}
    assert {InteractionType.PURCHASE, InteractionType.RETURN, InteractionType.VIEW} <= kinds
    assert any(e.return_reason in (ReturnReason.TOO_SMALL, ReturnReason.TOO_LARGE) for e in later)
    for e in later:
        live.apply(e, items.get(e.item_id), e.timestamp,
                   personalization=bool(consent.get(e.customer_id, True)))  # fmt: skip
    touched = sorted({e.customer_id for e in later})
    before = inter[(stamps <= pd.Timestamp(t0)).to_numpy()].assign(
        category=lambda f: f["item_id"].astype(str).map(lambda i: items[i]["category"])
    )
    returned = before[before["return_reason"].isin(["too_small", "too_large"])]
    bought = before[before["type"] == "purchase"]
    key = ["customer_id", "category", "size"]
    netted = (
        returned.groupby(key, observed=True)
        .size()
        .rename("returns")
        .reset_index()
        .merge(bought.groupby(key, observed=True).size().rename("buys").reset_index(), how="left")
    )
    negative_vote = set(
        netted.loc[~(netted["buys"] > netted["returns"]), "customer_id"].astype(str)
    )
    assert len(touched) >= 30
    assert len(negative_vote & set(touched)) <= len(touched) // 5  # the rest compare in full
    assert any(not consent[c] for c in touched)  # consent refusals are part of the replay

    def close(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict):
            assert isinstance(b, dict) and sorted(a) == sorted(b), (path, a, b)
            for k in a:
                close(a[k], b[k], f"{path}.{k}")
        elif isinstance(a, list):
            assert isinstance(b, list) and len(a) == len(b), (path, a, b)
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                close(x, y, f"{path}[{i}]")
        elif isinstance(a, float) and not isinstance(b, bool):
            # rounded to 2 or 4 decimals: the two paths may land on either side of a rounding edge
            assert b == pytest.approx(a, rel=1e-9, abs=1.01e-4 if abs(a) < 1 else 0.0101), (
                path,
                a,
                b,
            )
        else:
            assert a == b, (path, a, b)

    for customer in touched:
        state = live.states.get(customer)
        assert state is not None, customer
        want = batch1.lookup(customer, t1)
        assert want is not None, customer
        got = batch1.render(state, t1)  # T1 thresholds (see above)
        served = live.profile(customer, t1)  # what the service answers: T0 thresholds
        assert served is not None
        for key in ("stage", "first_purchase", "last_purchase", "sizes", "affinities"):
            assert served[key] == got[key], (customer, key)
        assert got.pop("updated_online") is True
        assert want.pop("updated_online") is False
        if customer in negative_vote:  # the known discrepancy (see above): winners only
            assert {c: v["size"] for c, v in want.pop("sizes").items()} == {
                c: v["size"] for c, v in got.pop("sizes").items()
            }, customer
        close(want, got, customer)

        # The state itself: counts exact, decayed masses to 1e-9 once brought to T1.
        batch_state = batch1.state(customer)
        assert batch_state is not None
        for key in ("first_purchase", "last_purchase", "last_seen", "frequency", "n_purchases",
                    "n_returns", "consent"):  # fmt: skip
            assert state[key] == batch_state[key], (customer, key, state[key], batch_state[key])
        assert state["monetary"] == pytest.approx(batch_state["monetary"], rel=1e-12, abs=1e-9)
        age = t1.timestamp() - state["decay_as_of"] if state["decay_as_of"] is not None else 0.0
        size_f = 2.0 ** (-age / (365.0 * 86_400))  # KEEP_ALL's half-lives
        aff_f = 2.0 ** (-age / (90.0 * 86_400))
        assert sorted(state["sizes"]) == sorted(batch_state["sizes"]), customer
        for category, votes in state["sizes"].items() if customer not in negative_vote else ():
            assert {k: pytest.approx(v * size_f, rel=1e-9) for k, v in votes.items()} == (
                batch_state["sizes"][category]
            ), (customer, category)
        assert sorted(state["affinities"]) == sorted(batch_state["affinities"]), customer
        for facet, entry in state["affinities"].items():
            other = batch_state["affinities"][facet]
            assert entry["total"] * aff_f == pytest.approx(other["total"], rel=1e-9)
            assert {
                k: pytest.approx(v * aff_f, rel=1e-9, abs=1e-12) for k, v in entry["top"].items()
            } == (other["top"]), (customer, facet)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_profile_config_is_strict_and_checked() -> None:
    with pytest.raises(ValueError, match="recency_dayz"):
        ProfileConfig.model_validate({"recency_dayz": 3})
    for bad in ({"r_high": 6}, {"size_keep": 0}, {"size_half_life_days": 0},
                {"consent_policy": "some"}, {"event_weights": {"like": 1.0}},
                {"size_confidence_scale": 0}, {"ltv_default_lifetime_years": -1}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            ProfileConfig.model_validate(bad)
    config = ProfileConfig(size_half_life_days=None, event_weights={"view": 0.3})
    assert ProfileConfig.from_dict(config.to_dict()) == config
    # the config saved with profiles before the pydantic model (a plain dict of every field)
    saved = {**ProfileConfig().to_dict(), "affinity_half_life_days": 30, "new_days": 14}
    assert ProfileConfig.from_dict(saved).new_days == 14


def test_train_config_refuses_a_misspelt_profile_key(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from feature_store.errors import DataFormatError
    from training.train import TrainConfig

    with pytest.raises(ValidationError, match="recency_dayz"):
        TrainConfig.model_validate({"profiles": {"recency_dayz": 3}})
    path = tmp_path / "train.json"
    path.write_text('{"profiles": {"recency_dayz": 3}}')
    with pytest.raises(DataFormatError, match="recency_dayz"):
        TrainConfig.from_file(path)
    path.write_text('{"profiles": {"new_days": 14}}')
    assert TrainConfig.from_file(path).profiles == ProfileConfig(new_days=14)
    assert TrainConfig().profiles == ProfileConfig()
