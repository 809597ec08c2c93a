"""compute_profiles: every customer's profile at one date, computed in columns from the events.

**Size profile** per category: the size the customer keeps. Every purchase in a size votes for
it; a return whose reason is ``too_small`` / ``too_large`` takes ``size_return_weight`` of that
vote back (1: purchases minus size returns) and votes ``size_shift_weight`` for the next larger
/ smaller size in the returned item's own size order (nothing when the item offers no such
size). Votes decay with half-life ``size_half_life_days``. The profile's size is the label with the
most votes (ties: the lower label in string order), with

    confidence = share × (1 − exp(−total / size_confidence_scale))

where ``share`` is the winner's share of the positive votes and ``total`` their sum: one kept
purchase gives 0.39, three consistent ones 0.78 (defaults), a split vote less.

**Affinities** to style, colour, material and price band: the sum over interactions of
``event_weights[type] × 0.5 ** (age_days / affinity_half_life_days)`` spread over the item's
values (an item with two styles gives each half), clipped at 0 and normalised to shares of the
facet total. Size-related returns weigh 0 (the piece was liked, it did not fit); other returns
weigh ``event_weights["return"]`` (negative by default).

**Consent.** ``consent_policy`` says what happens to customers whose ``consent_personalization``
is explicitly False: ``"rfm_only"`` (default) keeps RFM, stage, churn and LTV (CRM) but no size
or affinities (personalization); ``"exclude"`` leaves them out entirely; ``"full"`` profiles
everyone. Online, :meth:`CustomerProfiles.apply_event` never learns sizes or affinities for a
state whose ``consent`` is False, and :func:`revoke_personalization` clears them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ..dataset import Dataset
from ..timeutils import decay
from .config import ProfileConfig
from .events import ChurnScorer, EventTable, _epoch_seconds
from .scoring import RfmThresholds, _whole_days, lifetime_value, stage_codes, tier_codes
from .store import _COLUMNS, CustomerProfiles, _Snapshot
from .vocabulary import (
    FACETS,
    K_PURCHASE,
    K_RETURN,
    PROSPECT,
    R_TOO_LARGE,
    R_TOO_SMALL,
    TIERS,
    Array,
    half_life_seconds,
)

logger = logging.getLogger("lookbook.profiles")


def _top_k(group: Array, value: Array, k: int) -> npt.NDArray[np.int64]:
    """Indices (ascending) of the ``k`` largest ``value`` per group.

    Entries of a group must be contiguous and in tie-break order (the first of equal values
    wins): k rounds of a segmented max, linear in the number of entries.
    """
    n = len(group)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(group[1:] != group[:-1]) + 1]
    counts = np.diff(np.r_[starts, n])
    big = counts > k
    keep = np.repeat(~big, counts)
    if not big.any():
        return np.flatnonzero(keep).astype(np.int64)
    # Only the entries of groups larger than k need choosing.
    sub = np.flatnonzero(~keep)
    sub_counts = counts[big]
    sub_starts = np.r_[0, np.cumsum(sub_counts)[:-1]]
    seg = np.repeat(np.arange(len(sub_counts)), sub_counts)
    v = np.asarray(value, np.float64)[sub].copy()
    position = np.arange(len(sub))
    for _ in range(k):
        best = np.maximum.reduceat(v, sub_starts)
        candidate = np.where(v == best[seg], position, len(sub))
        first = np.minimum.reduceat(candidate, sub_starts)
        keep[sub[first]] = True
        v[first] = -np.inf
    return np.flatnonzero(keep).astype(np.int64)


def _size_votes(
    ev: EventTable, allowed: npt.NDArray[np.bool_], now_s: float, config: ProfileConfig
) -> tuple[Array, Array, Array, Array]:
    """(row, category, label, vote) of the kept top ``size_keep`` labels per (customer, category)."""
    cat = ev.catalog
    known = (ev.item >= 0) & (ev.size >= 0) & allowed[ev.cust]
    item_cat = np.where(ev.item >= 0, cat.category[np.maximum(ev.item, 0)], -1)
    known &= item_cat >= 0
    buy = known & (ev.kind == K_PURCHASE)
    small = known & (ev.kind == K_RETURN) & (ev.reason == R_TOO_SMALL)
    large = known & (ev.kind == K_RETURN) & (ev.reason == R_TOO_LARGE)
    weight = decay(np.maximum(now_s - ev.ts, 0.0), half_life_seconds(config.size_half_life_days))
    rows_l, cats_l, labels_l, votes_l = [], [], [], []
    rows_l.append(ev.cust[buy])
    cats_l.append(item_cat[buy])
    labels_l.append(ev.size[buy])
    votes_l.append(weight[buy])
    for mask, step in ((small, 1), (large, -1)):
        rows_l.append(ev.cust[mask])
        cats_l.append(item_cat[mask])
        labels_l.append(ev.size[mask])
        votes_l.append(-config.size_return_weight * weight[mask])
        shifted = cat.shifted_label(ev.item[mask], ev.size[mask], np.full(int(mask.sum()), step))
        ok = shifted >= 0
        rows_l.append(ev.cust[mask][ok])
        cats_l.append(item_cat[mask][ok])
        labels_l.append(shifted[ok])
        votes_l.append(config.size_shift_weight * weight[mask][ok])
    row = np.concatenate(rows_l).astype(np.int64)
    category = np.concatenate(cats_l).astype(np.int64)
    label = np.concatenate(labels_l).astype(np.int64)
    vote = np.concatenate(votes_l)
    n_cat = max(len(cat.categories), 1)
    n_lab = max(len(cat.size_labels), 1)
    key = (row * n_cat + category) * n_lab + label
    uniq, inverse = np.unique(key, return_inverse=True)
    total = np.bincount(inverse, weights=vote, minlength=len(uniq))
    positive = total > 1e-12
    uniq, total = uniq[positive], total[positive]
    label_u = uniq % n_lab
    group = uniq // n_lab
    keep = _top_k(group, total, config.size_keep)  # labels ascend within a group
    group_k = group[keep]
    return (
        (group_k // n_cat).astype(np.int32),
        (group_k % n_cat).astype(np.int16),
        label_u[keep].astype(np.int32),
        total[keep].astype(np.float64),
    )


def _affinities(
    ev: EventTable, allowed: npt.NDArray[np.bool_], now_s: float, config: ProfileConfig
) -> tuple[dict[str, Array], dict[str, Array], dict[str, Array], dict[str, Array]]:
    """Per facet: (row, value code, mass) of the top ``affinity_keep`` values, and row totals."""
    n = ev.n_customers
    cat = ev.catalog
    w = config.kind_weights()[ev.kind.astype(np.int64)]
    size_return = (ev.kind == K_RETURN) & ((ev.reason == R_TOO_SMALL) | (ev.reason == R_TOO_LARGE))
    age = np.maximum(now_s - ev.ts, 0.0)
    w = np.where(size_return, 0.0, w) * decay(
        age, half_life_seconds(config.affinity_half_life_days)
    )
    use = (w != 0) & (ev.item >= 0) & allowed[ev.cust]
    n_items = len(cat.item_ids)
    cust_items = sp.csr_matrix(
        (w[use], (ev.cust[use].astype(np.int64), ev.item[use].astype(np.int64))),
        shape=(n, n_items),
    )
    cust_items.sum_duplicates()
    rows_out: dict[str, Array] = {}
    codes_out: dict[str, Array] = {}
    mass_out: dict[str, Array] = {}
    totals: dict[str, Array] = {}
    for facet in FACETS:
        matrix = cat.facet_matrix[facet]
        if matrix.shape[1] == 0:
            rows_out[facet] = np.empty(0, np.int32)
            codes_out[facet] = np.empty(0, np.int32)
            mass_out[facet] = np.empty(0, np.float64)
            totals[facet] = np.zeros(n)
            continue
        scores = sp.csr_matrix(cust_items @ matrix)
        scores.data = np.maximum(scores.data, 0.0)
        scores.eliminate_zeros()
        scores.sort_indices()  # value codes ascend within a row: ties go to the lower code
        row = np.repeat(np.arange(n, dtype=np.int64), np.diff(scores.indptr))
        code = scores.indices.astype(np.int64)
        mass = scores.data.astype(np.float64)
        totals[facet] = np.bincount(row, weights=mass, minlength=n)
        keep = _top_k(row, mass, config.affinity_keep)
        rows_out[facet] = row[keep].astype(np.int32)
        codes_out[facet] = code[keep].astype(np.int32)
        mass_out[facet] = mass[keep]
    return rows_out, codes_out, mass_out, totals


def compute_profiles(
    dataset: Dataset | EventTable,
    now: datetime,
    config: ProfileConfig | None = None,
    *,
    churn: ChurnScorer | None = None,
) -> CustomerProfiles:
    """Profiles of every customer of ``dataset`` as of ``now`` (events after ``now`` ignored).

    ``dataset`` may also be an :class:`EventTable` already built from it (saves the conversion
    when churn snapshots are computed from the same data). ``churn`` fills ``churn_risk`` (and
    the LTV lifetime) for customers who have purchased; without it churn risk is null.
    """
    config = config or ProfileConfig()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    now_s = _epoch_seconds(now)
    ev = dataset if isinstance(dataset, EventTable) else EventTable.from_dataset(dataset)
    ev = ev.until(now)
    activity = ev.activity(now)
    n = ev.n_customers
    keep = np.ones(n, dtype=bool)
    if config.consent_policy == "exclude":
        keep = ev.consent.copy()
    allowed = ev.consent if config.consent_policy == "rfm_only" else np.ones(n, dtype=bool)
    allowed = allowed & keep

    first = activity["first_purchase"].to_numpy(np.float64)
    last = activity["last_purchase"].to_numpy(np.float64)
    frequency = activity["frequency"].to_numpy(np.float64)
    monetary = activity["monetary"].to_numpy(np.float64)
    purchased = ~np.isnan(last)
    recency = _whole_days(now_s - last)
    base = purchased & keep
    thresholds = RfmThresholds.fit(recency[base], frequency[base], monetary[base])
    r, f, m = thresholds.scores(np.nan_to_num(recency), frequency, monetary)
    tier = np.where(purchased, tier_codes(r, f, m, config), TIERS.index(PROSPECT)).astype(np.int8)
    zero = np.int8(0)
    r, f, m = (np.where(purchased, s, zero).astype(np.int8) for s in (r, f, m))
    stage = stage_codes(first, last, now_s, config)

    risk = np.full(n, np.nan, dtype=np.float32)
    horizon: int | None = None
    if churn is not None:
        horizon = int(churn.horizon_days)
        if base.any():
            predicted = np.asarray(churn.predict_activity(activity[base], now), np.float64)
            risk[base] = predicted.astype(np.float32)
    ltv = lifetime_value(monetary, frequency, first, now_s, risk, horizon, config)

    size_row, size_cat, size_label, size_vote = _size_votes(ev, allowed, now_s, config)
    aff_row, aff_code, aff_mass, aff_total = _affinities(ev, allowed, now_s, config)

    cols: dict[str, Array] = {
        "first_purchase": first,
        "last_purchase": last,
        "last_seen": activity["last_seen"].to_numpy(np.float64),
        "frequency": frequency.astype(np.int32),
        "monetary": monetary,
        "n_purchases": activity["n_purchases"].to_numpy().astype(np.int32),
        "n_returns": activity["n_returns"].to_numpy().astype(np.int32),
        "r_score": r,
        "f_score": f,
        "m_score": m,
        "tier": tier,
        "stage": stage,
        "churn_risk": risk,
        "ltv": ltv,
        "consent": ev.consent.copy(),
        "decay_as_of": np.full(n, now_s),
        **{f"aff_total_{facet}": aff_total[facet] for facet in FACETS},
    }
    cols = {k: np.asarray(v).astype(_COLUMNS[k], copy=False) for k, v in cols.items()}
    ids = ev.customer_ids
    if not keep.all():
        new_index = np.cumsum(keep) - 1
        ids = ids[keep]
        cols = {k: v[keep] for k, v in cols.items()}
        size_ok = keep[size_row]
        size_row = new_index[size_row[size_ok]].astype(np.int32)
        size_cat, size_label, size_vote = size_cat[size_ok], size_label[size_ok], size_vote[size_ok]
        for facet in FACETS:
            ok = keep[aff_row[facet]]
            aff_row[facet] = new_index[aff_row[facet][ok]].astype(np.int32)
            aff_code[facet], aff_mass[facet] = aff_code[facet][ok], aff_mass[facet][ok]
    snapshot = _Snapshot(
        ids=ids,
        cols=cols,
        size_row=size_row,
        size_cat=size_cat,
        size_label=size_label,
        size_vote=size_vote,
        aff_row={k: v.astype(np.int32) for k, v in aff_row.items()},
        aff_code={k: v.astype(np.int32) for k, v in aff_code.items()},
        aff_mass={k: v.astype(np.float64) for k, v in aff_mass.items()},
    )
    profiles = CustomerProfiles(
        as_of=now,
        config=config,
        thresholds=thresholds,
        snapshot=snapshot,
        categories=ev.catalog.categories,
        size_labels=ev.catalog.size_labels,
        facet_values=ev.catalog.facet_values,
        churn_horizon_days=horizon,
    )
    logger.info(
        "profiles of %d customers as of %s: %d purchasers, %d size rows",
        len(ids),
        now.date().isoformat(),
        int(base.sum()),
        len(size_row),
    )
    return profiles
