"""Customers, their latent tastes and their interactions, generated one block at a time.

Every step is vectorised with numpy.

* **Customers** have latent tastes: a primary and a secondary style, a colour palette (neutrals
  plus an accent family), a price band, preferred channels, a home store and a true size per
  category (correlated through one body-size factor). Activity is heavy-tailed; some customers
  churn.
* **Sessions** fall on days weighted by retail traffic (weekends, Black Friday, Christmas, sales).
  A purchasing session buys an outfit — a template such as top+bottom+shoes or
  dress+shoes+accessory, drawn with season-dependent weights (outerwear in winter, swimwear in
  summer) — in one of the customer's styles. Each item is drawn by popularity among the items of
  that category and style that are in season and already launched, and accepted more often when
  its colour is in the customer's palette, its price band is the customer's and it is new.
  Online sessions also browse (views, clicks, recommendation impressions, abandoned carts).
* **Sizes and returns.** A purchase is usually in the customer's true size, sometimes one off, and
  always a size the item offers; a wrong size is usually returned a few days later as
  ``too_small`` / ``too_large``; a few right-size purchases come back for other reasons. A
  minority of items run small or large by one size (the catalog's ``fit_offset``): there the
  size that fits is the true size moved by it, so the customer's usual size comes back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import (
    PRICE_BANDS,
    CustomerCols,
    InteractionCols,
)
from ..timeutils import SECONDS_PER_DAY
from .catalog import _Catalog, _list_array
from .common import _choice, _choice_rows, _rank_in_segment, _rng, _segment_starts, _strings, _take
from .pools import _pick_items, _Pools
from .rates import (
    _APPROX_RETURN_RATE,
    _BROWSE_MEAN,
    _CHANNEL_ALPHA,
    _CHANNELS,
    _HOURS_ONLINE,
    _HOURS_STORE,
    _K_BUY,
    _K_CART,
    _K_CLICK,
    _K_IMP,
    _K_RET,
    _K_VIEW,
    _K_WISH,
    _KIND_OFFSET,
    _KINDS,
    _OTHER_REASON_P,
    _P_BUY_ONLINE,
    _P_CART_BROWSE,
    _P_CART_PURCHASE,
    _P_CLICK_ORGANIC,
    _P_CLICK_REC,
    _P_OFF_SEASON,
    _P_OTHER_RETURN_ONLINE,
    _P_OTHER_RETURN_STORE,
    _P_REC_BROWSE,
    _P_REC_PURCHASE,
    _P_SIZE_RETURN,
    _P_VIEW_PURCHASE,
    _P_WISH,
    _P_WISH_PURCHASE,
    _REASONS,
    _SIZE_OFFSET_P,
    _SIZE_OFFSETS,
)
from .stock import _store_ids
from .traffic import _Calendar
from .vocabulary import (
    _ACCENT_FAMILIES,
    _AGE_SHARE,
    _CAT,
    _COL,
    _MAX_TEMPLATE,
    _NEUTRALS,
    _PRICE_BAND_SHARE,
    _SCALE_NAMES,
    _SEED_BLOCK,
    _SLOT,
    _STYLE_BY_AGE,
    _TEMPLATES,
    AGE_BANDS,
    CATEGORIES,
    COLOURS,
    LATENT_SIZE_COLUMNS,
    SIZE_SCALES,
    STYLES,
    TRUE_SIZE_SLOTS,
    FloatArray,
    IntArray,
)


def _expected_basket() -> float:
    lengths = np.array([len(t) for t, _ in _TEMPLATES], dtype=np.float64)
    weights = np.array([w for _, w in _TEMPLATES], dtype=np.float64)
    per_season = (weights * lengths[:, None]).sum(axis=0) / weights.sum(axis=0)
    return float(per_season.mean())


def _expected_events_per_session(p_store: float) -> float:
    """Mean interactions of one session under the behaviour constants (used to hit the requested
    interactions per customer on average)."""
    basket = _expected_basket()
    browse_slots = _BROWSE_MEAN + (1 - _P_BUY_ONLINE)
    browse_events = _P_REC_BROWSE * (1 + _P_CLICK_REC * (2 + _P_WISH + _P_CART_BROWSE)) + (
        1 - _P_REC_BROWSE
    ) * (_P_CLICK_ORGANIC + 1 + _P_WISH + _P_CART_BROWSE)
    view = _P_REC_PURCHASE + (1 - _P_REC_PURCHASE) * _P_VIEW_PURCHASE
    buy_events = 2 * _P_REC_PURCHASE + view + _P_WISH_PURCHASE + _P_CART_PURCHASE + 1
    online = browse_slots * browse_events + _P_BUY_ONLINE * basket * (
        buy_events + _APPROX_RETURN_RATE
    )
    store = basket * (1 + _APPROX_RETURN_RATE / 2)
    return p_store * store + (1 - p_store) * online


@dataclass
class _Params:
    seed: int
    stores: int
    interactions_per_customer: float
    id_width: int


def _generate_block(
    block: int,
    first: int,
    n: int,
    cat: _Catalog,
    pools: _Pools,
    cal: _Calendar,
    params: _Params,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Customers ``first .. first + n - 1`` (0-based): their rows of customers, latent truth and
    interactions (sorted by timestamp, then customer, then event order)."""
    rng = _rng(params.seed, _SEED_BLOCK, block)
    start_day, end_day = cal.start_day, cal.end_day
    n_days = end_day - start_day + 1
    stores = params.stores

    # --- customers -----------------------------------------------------------------------
    age_band = _choice(rng, _AGE_SHARE, n)
    existing = rng.random(n) < 0.4
    signup = np.where(
        existing,
        rng.integers(start_day - 3 * 365, start_day, n),
        rng.integers(start_day, end_day + 1, n),
    )
    active_from = np.maximum(signup, start_day)
    churn = rng.random(n) < 0.3
    active_to = np.where(
        churn, active_from + (rng.random(n) * (end_day - active_from)).astype(np.int64), end_day
    )
    consent = rng.random(n) < 0.9
    primary = _choice_rows(rng, _STYLE_BY_AGE[age_band])
    sec_w = _STYLE_BY_AGE[age_band].copy() + 0.02
    sec_w[np.arange(n), primary] = 0.0
    secondary = _choice_rows(rng, sec_w)
    primary_share = rng.uniform(0.55, 0.9, n)
    neutrals = np.array([_COL[c] for c in _NEUTRALS])
    neutral_pick = np.argsort(rng.random((n, len(neutrals))), axis=1)[:, :2]
    family = rng.integers(0, len(_ACCENT_FAMILIES), n)
    fam_cols = np.array([[_COL[c] for c in f] for f in _ACCENT_FAMILIES])
    accent_pick = np.argsort(rng.random((n, fam_cols.shape[1])), axis=1)[:, :2]
    palette_cols = np.concatenate(
        [neutrals[neutral_pick], fam_cols[family[:, None], accent_pick]], axis=1
    )
    palette = np.bitwise_or.reduce(np.int64(1) << palette_cols, axis=1)
    cust_band = _choice(rng, _PRICE_BAND_SHARE, n)
    alpha = _CHANNEL_ALPHA.copy()
    if stores == 0:
        alpha[2] = 1e-9
    channel_p = rng.dirichlet(alpha, n)
    if stores == 0:
        channel_p[:, 2] = 0.0
        channel_p /= channel_p.sum(axis=1, keepdims=True)
    home_store = rng.integers(1, stores + 1, n) if stores else np.zeros(n, dtype=np.int64)

    # True sizes: one body factor, category-specific noise.
    body = rng.standard_normal(n)
    lower = 0.85 * body + 0.53 * rng.standard_normal(n)

    def letter(x: FloatArray, noise: float) -> IntArray:
        return np.clip(np.rint(2.1 + 1.1 * x + noise * rng.standard_normal(n)), 0, 5).astype(
            np.int64
        )

    true = np.zeros((n, len(TRUE_SIZE_SLOTS)), dtype=np.int64)
    top = letter(body, 0.25)
    true[:, _SLOT[("top", "letter")]] = top
    true[:, _SLOT[("outerwear", "letter")]] = np.minimum(top + (rng.random(n) < 0.12), 5)
    true[:, _SLOT[("dress", "letter")]] = letter(body, 0.35)
    true[:, _SLOT[("underwear", "letter")]] = top
    true[:, _SLOT[("swimwear", "letter")]] = letter(body, 0.3)
    true[:, _SLOT[("bottom", "letter")]] = letter(lower, 0.2)
    waist_values = np.array([float(v) for v in SIZE_SCALES["waist"]])
    waist = 30.5 + 3.2 * lower
    true[:, _SLOT[("bottom", "waist")]] = np.clip(
        np.searchsorted((waist_values[1:] + waist_values[:-1]) / 2, waist), 0, 10
    )
    true[:, _SLOT[("bottom", "eu_bottom")]] = np.clip(np.rint(2.6 + 1.5 * lower), 0, 6)
    true[:, _SLOT[("shoes", "shoe")]] = np.clip(
        np.rint(4.5 + 1.2 * body + 1.8 * rng.standard_normal(n)), 0, 10
    )
    true[:, _SLOT[("accessory", "sml")]] = np.array([0, 0, 1, 1, 2, 2])[top]

    # Activity: heavy-tailed, proportional to the time a customer is active.
    window = (active_to - active_from + 1).astype(np.float64)
    intensity = rng.lognormal(0.0, 1.0, n) * window
    intensity /= intensity.mean()
    p_store = float(_CHANNEL_ALPHA[2] / _CHANNEL_ALPHA.sum()) if stores else 0.0
    mean_sessions = params.interactions_per_customer / _expected_events_per_session(p_store)
    if mean_sessions >= 1.0:
        n_sessions = 1 + rng.poisson((mean_sessions - 1.0) * intensity)
    else:
        n_sessions = rng.poisson(mean_sessions * intensity)
    n_sessions = n_sessions.astype(np.int64)

    # --- sessions ------------------------------------------------------------------------
    sess_cust = np.repeat(np.arange(n, dtype=np.int64), n_sessions)
    n_sess = len(sess_cust)
    lo_cdf = cal.cdf[active_from[sess_cust] - start_day]
    hi_cdf = cal.cdf[active_to[sess_cust] - start_day + 1]
    u = lo_cdf + rng.random(n_sess) * (hi_cdf - lo_cdf)
    day_idx = np.clip(np.searchsorted(cal.cdf, u, side="right") - 1, 0, n_days - 1)
    day_idx = np.clip(day_idx, active_from[sess_cust] - start_day, active_to[sess_cust] - start_day)
    sess_day = start_day + day_idx
    sess_season = cal.season[day_idx]
    sess_channel = _choice_rows(rng, channel_p[sess_cust])
    in_store = sess_channel == 2
    at_home = rng.random(n_sess) < 0.85
    sess_store = np.where(
        in_store,
        np.where(at_home, home_store[sess_cust], rng.integers(1, max(stores, 1) + 1, n_sess)),
        0,
    )
    hours = np.where(
        in_store,
        _choice(rng, _HOURS_STORE, n_sess),
        _choice(rng, _HOURS_ONLINE, n_sess),
    )
    sess_start = sess_day * SECONDS_PER_DAY + hours * 3600 + rng.integers(0, 3600, n_sess)
    sess_style = np.where(
        rng.random(n_sess) < primary_share[sess_cust], primary[sess_cust], secondary[sess_cust]
    )
    buys = in_store | (rng.random(n_sess) < _P_BUY_ONLINE)
    template_w = np.array([w for _, w in _TEMPLATES], dtype=np.float64)  # (templates, seasons)
    template = _choice_rows(rng, template_w.T[sess_season])
    template_len = np.array([len(t) for t, _ in _TEMPLATES], dtype=np.int64)
    template_cats = np.full((len(_TEMPLATES), _MAX_TEMPLATE), -1, dtype=np.int64)
    for ti, (cats, _) in enumerate(_TEMPLATES):
        template_cats[ti, : len(cats)] = [_CAT[c] for c in cats]
    n_buy = np.where(buys, template_len[template], 0)
    n_browse = np.where(in_store, 0, rng.poisson(_BROWSE_MEAN, n_sess) + (~buys).astype(np.int64))
    n_slots_s = n_buy + n_browse

    # --- item slots (browsed first, then the basket) ---------------------------------------
    slot_sess = np.repeat(np.arange(n_sess, dtype=np.int64), n_slots_s)
    rank = _rank_in_segment(n_slots_s)
    is_buy = rank >= n_browse[slot_sess]
    n_slots = len(slot_sess)
    season_cat_w = np.zeros((4, len(CATEGORIES)))
    for cats, w in _TEMPLATES:
        for c in cats:
            season_cat_w[:, _CAT[c]] += w
    slot_cat = np.where(
        is_buy,
        template_cats[template[slot_sess], np.maximum(rank - n_browse[slot_sess], 0)],
        _choice_rows(rng, season_cat_w[sess_season[slot_sess]]),
    )
    slot_cust = sess_cust[slot_sess]
    slot_day = sess_day[slot_sess]
    item = _pick_items(
        rng,
        cat,
        pools,
        slot_cat,
        sess_style[slot_sess],
        sess_season[slot_sess],
        slot_day,
        rng.random(n_slots) < _P_OFF_SEASON,
        palette[slot_cust],
        cust_band[slot_cust],
        ~is_buy,
    )
    keep = item >= 0
    slot_sess, is_buy, item = slot_sess[keep], is_buy[keep], item[keep]
    slot_cust, slot_day = slot_cust[keep], slot_day[keep]
    n_slots = len(item)
    slot_online = ~in_store[slot_sess]

    # Size: usually the true size, sometimes one off, always one the item offers.
    item_slot = cat.slot[item]
    sized = item_slot >= 0
    true_idx = np.where(sized, true[slot_cust, np.maximum(item_slot, 0)], 0)
    wish = true_idx + _SIZE_OFFSETS[_choice(rng, _SIZE_OFFSET_P, n_slots)]
    size_idx = np.where(sized, np.clip(wish, cat.size_lo[item], cat.size_hi[item]), 0)
    # The size that fits: the true size, moved by the item's cut (runs small / large).
    off = np.where(sized, size_idx - true_idx - cat.fit_offset[item], 0)

    # Price paid: list price, discounted in sales for items older than two months.
    day_i = slot_day - start_day
    discounted = (rng.random(n_slots) < cal.sale_p[day_i]) & (slot_day - cat.launch[item] > 60)
    paid = np.round(cat.price[item] * np.where(discounted, cal.sale_rate[day_i], 1.0), 2)

    # Events of each slot.
    flags = np.zeros((n_slots, len(_KINDS)), dtype=bool)
    r = rng.random((n_slots, 8))
    buy_online = is_buy & slot_online
    browse = ~is_buy
    rec_b = browse & (r[:, 0] < _P_REC_BROWSE)
    rec_p = buy_online & (r[:, 0] < _P_REC_PURCHASE)
    from_rec = rec_b | rec_p
    clicked = np.where(rec_b, r[:, 1] < _P_CLICK_REC, browse & (r[:, 1] < _P_CLICK_ORGANIC))
    viewed = (browse & (~rec_b | clicked)) | rec_p | (buy_online & (r[:, 2] < _P_VIEW_PURCHASE))
    flags[:, _K_IMP] = from_rec
    flags[:, _K_CLICK] = clicked | rec_p
    flags[:, _K_VIEW] = viewed
    flags[:, _K_WISH] = (browse & viewed & (r[:, 3] < _P_WISH)) | (
        buy_online & (r[:, 3] < _P_WISH_PURCHASE)
    )
    flags[:, _K_CART] = (browse & viewed & (r[:, 4] < _P_CART_BROWSE)) | (
        buy_online & (r[:, 4] < _P_CART_PURCHASE)
    )
    flags[:, _K_BUY] = is_buy

    # Returns: a wrong size usually comes back with a size reason; some others for other reasons.
    p_size = _P_SIZE_RETURN[np.minimum(np.abs(off), 2)] * sized
    size_ret = is_buy & (r[:, 5] < p_size)
    p_other = np.where(slot_online, _P_OTHER_RETURN_ONLINE, _P_OTHER_RETURN_STORE)
    other_ret = is_buy & ~size_ret & (r[:, 6] < p_other)
    reason = np.where(
        off < 0,
        0,
        np.where(off > 0, 1, (r[:, 7] < 0.5).astype(np.int64)),  # right size: fit still varies
    )
    reason = np.where(other_ret, 2 + _choice(rng, _OTHER_REASON_P, n_slots), reason)
    returned = size_ret | other_ret
    delay = np.where(slot_online, 3 + rng.poisson(6, n_slots), 1 + rng.poisson(5, n_slots))

    # Timing: slots a minute or so apart, checkout after the last; stores check out at once.
    gaps = (rng.exponential(70.0, n_slots) + 5).astype(np.int64)
    slots_per_sess = np.bincount(slot_sess, minlength=n_sess).astype(np.int64)
    csum = np.cumsum(gaps)
    first_slot = _segment_starts(slots_per_sess)
    sess_base = np.zeros(n_sess, dtype=np.int64)
    has = slots_per_sess > 0
    sess_base[has] = csum[first_slot[has]] - gaps[first_slot[has]]
    slot_offset = csum - sess_base[slot_sess]
    last_offset = np.zeros(n_sess, dtype=np.int64)
    last_offset[has] = slot_offset[first_slot[has] + slots_per_sess[has] - 1]
    checkout = np.where(
        in_store,
        sess_start,
        sess_start + last_offset + 60 + rng.exponential(120.0, n_sess).astype(np.int64),
    )
    slot_time = sess_start[slot_sess] + np.where(slot_online, slot_offset, 0)
    buy_time = checkout[slot_sess]
    ret_hour = np.where(slot_online, rng.integers(0, 24, n_slots), rng.integers(10, 19, n_slots))
    ret_time = (
        (buy_time // SECONDS_PER_DAY + delay) * SECONDS_PER_DAY
        + ret_hour * 3600
        + rng.integers(0, 3600, n_slots)
    )
    end_ts = (end_day + 1) * SECONDS_PER_DAY - 1
    flags[:, _K_RET] = returned & (ret_time <= end_ts)

    rec_ids = pa.array(
        [f"rec-{v:016x}" for v in rng.integers(0, 2**63 - 1, n_sess, dtype=np.int64)],
        type=pa.string(),
    )
    position = rng.integers(0, 12, n_slots)

    # --- expand to events ----------------------------------------------------------------
    ev_slot, ev_kind = np.nonzero(flags)
    ts = np.where(
        ev_kind == _K_BUY,
        buy_time[ev_slot],
        np.where(ev_kind == _K_RET, ret_time[ev_slot], slot_time[ev_slot] + _KIND_OFFSET[ev_kind]),
    )
    ts = np.where(ev_kind == _K_RET, ts, np.minimum(ts, end_ts))
    ev_cust = slot_cust[ev_slot]
    order = np.lexsort((ev_kind, ev_slot, ev_cust, ts))
    ev_slot, ev_kind, ts, ev_cust = ev_slot[order], ev_kind[order], ts[order], ev_cust[order]
    ev_sess = slot_sess[ev_slot]
    with_size = (ev_kind >= _K_CART) & (ev_kind <= _K_RET)
    with_rec = from_rec[ev_slot] & (ev_kind != _K_RET)
    is_return = ev_kind == _K_RET

    width = params.id_width
    cust_ids = pa.array(
        [f"C{i:0{width}d}" for i in range(first + 1, first + n + 1)], type=pa.string()
    )
    ev_item = item[ev_slot]
    scale_base = np.zeros(len(_SCALE_NAMES), dtype=np.int64)
    np.cumsum([len(SIZE_SCALES[s]) for s in _SCALE_NAMES[:-1]], out=scale_base[1:])
    all_labels = tuple(label for s in _SCALE_NAMES for label in SIZE_SCALES[s])
    interactions = pa.table(
        {
            InteractionCols.CUSTOMER_ID: pc.take(cust_ids, pa.array(ev_cust)),
            InteractionCols.ITEM_ID: pc.take(cat.ids, pa.array(ev_item)),
            InteractionCols.TYPE: _take(_strings(tuple(k.value for k in _KINDS)), ev_kind),
            InteractionCols.TIMESTAMP: pa.array(ts * 1_000_000, type=pa.timestamp("us", tz="UTC")),
            InteractionCols.CHANNEL: _take(
                _strings(tuple(c.value for c in _CHANNELS)), sess_channel[ev_sess]
            ),
            InteractionCols.SIZE: _take(
                _strings(all_labels),
                scale_base[cat.scale[ev_item]] + size_idx[ev_slot],
                ~with_size,
            ),
            InteractionCols.PRICE: pa.array(paid[ev_slot], type=pa.float64(), mask=~with_size),
            InteractionCols.STORE_ID: _take(_store_ids(stores), sess_store[ev_sess], ~with_size),
            InteractionCols.RETURN_REASON: _take(
                _strings(tuple(x.value for x in _REASONS)), reason[ev_slot], ~is_return
            ),
            InteractionCols.RECOMMENDATION_ID: _take(rec_ids, ev_sess, ~with_rec),
            InteractionCols.POSITION: pa.array(
                position[ev_slot].astype(np.int32), type=pa.int32(), mask=~with_rec
            ),
        }
    )

    customers = pa.table(
        {
            CustomerCols.ID: cust_ids,
            CustomerCols.AGE_BAND: _take(_strings(AGE_BANDS), age_band),
            CustomerCols.CONSENT_PERSONALIZATION: pa.array(consent, type=pa.bool_()),
            CustomerCols.SIGNUP_DATE: pa.array(signup.astype(np.int32), type=pa.int32()).cast(
                pa.date32()
            ),
        }
    )
    latent_cols: dict[str, pa.Array] = {
        "customer_id": cust_ids,
        "primary_style": _take(_strings(STYLES), primary),
        "secondary_style": _take(_strings(STYLES), secondary),
        "primary_style_share": pa.array(np.round(primary_share, 3)),
        "palette": _list_array(
            np.bitwise_and(palette[:, None] >> np.arange(len(COLOURS)), 1).astype(bool), COLOURS
        ),
        "price_band": _take(_strings(PRICE_BANDS), cust_band),
        "home_store": _take(_store_ids(stores), home_store),
    }
    for k, ((_, sname), col) in enumerate(zip(TRUE_SIZE_SLOTS, LATENT_SIZE_COLUMNS, strict=True)):
        latent_cols[col] = _take(_strings(SIZE_SCALES[sname]), true[:, k])
    return customers, pa.table(latent_cols), interactions
