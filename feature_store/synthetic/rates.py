"""Behaviour rates of synthetic customers: purchase, browse, click, return probabilities and event kinds."""

from __future__ import annotations

from typing import Final

import numpy as np

from ..schema import (
    Channel,
    InteractionType,
    ReturnReason,
)

# Behaviour constants.
_P_BUY_ONLINE: Final = 0.45  # an online/app session ends in a purchase
_BROWSE_MEAN: Final = 1.2  # Poisson mean of browsed (not bought) items per online session
_P_REC_BROWSE: Final = 0.25  # a browsed item was shown by a recommendation
_P_CLICK_REC: Final = 0.35
_P_CLICK_ORGANIC: Final = 0.5
_P_WISH: Final = 0.04
_P_CART_BROWSE: Final = 0.10
_P_REC_PURCHASE: Final = 0.12
_P_VIEW_PURCHASE: Final = 0.85
_P_CART_PURCHASE: Final = 0.9
_P_WISH_PURCHASE: Final = 0.03
_SIZE_OFFSETS: Final = np.array([-2, -1, 0, 1, 2])
_SIZE_OFFSET_P: Final = np.array([0.02, 0.10, 0.78, 0.08, 0.02])
# How an item's cut fits: the size that fits is this many sizes above the customer's true size
# (+1 runs small, -1 runs large); for a minority of the sized items that offer several sizes.
_FIT_OFFSETS: Final = np.array([-1, 0, 1])
_FIT_OFFSET_P: Final = np.array([0.06, 0.88, 0.06])
_P_SIZE_RETURN: Final = np.array([0.03, 0.55, 0.8])  # by |bought - true| = 0, 1, >=2
_P_OTHER_RETURN_ONLINE: Final = 0.07
_P_OTHER_RETURN_STORE: Final = 0.025
_OTHER_REASONS: Final = (
    ReturnReason.NOT_AS_DESCRIBED,
    ReturnReason.QUALITY,
    ReturnReason.CHANGED_MIND,
    ReturnReason.OTHER,
)
_OTHER_REASON_P: Final = np.array([0.3, 0.25, 0.35, 0.1])
_REASONS: Final = (ReturnReason.TOO_SMALL, ReturnReason.TOO_LARGE, *_OTHER_REASONS)
_APPROX_RETURN_RATE: Final = 0.17
_P_OFF_SEASON: Final = 0.1
_MAX_ROUNDS: Final = 30
_CHANNELS: Final = (Channel.ONLINE, Channel.APP, Channel.STORE)
_CHANNEL_ALPHA: Final = np.array([2.0, 1.4, 1.0])
_HOURS_ONLINE: Final = np.array(
    [1, .6, .4, .3, .3, .4, .8, 1.5, 2.2, 2.5, 2.6, 2.8, 3.2, 3.2, 2.8, 2.7, 2.8, 3.2, 3.8, 4.5,
     5, 4.6, 3.5, 2]
)  # fmt: skip
_HOURS_STORE: Final = np.array(
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 4, 4, 4, 4, 4.5, 5, 4.5, 2.5, 0, 0, 0, 0], dtype=np.float64
)
# Event kinds of one item "slot", in the order they happen, and their offset after the slot time.
_KINDS: Final = (
    InteractionType.IMPRESSION,
    InteractionType.CLICK,
    InteractionType.VIEW,
    InteractionType.WISHLIST,
    InteractionType.ADD_TO_CART,
    InteractionType.PURCHASE,
    InteractionType.RETURN,
)
_K_IMP, _K_CLICK, _K_VIEW, _K_WISH, _K_CART, _K_BUY, _K_RET = range(7)
_KIND_OFFSET: Final = np.array([0, 2, 5, 25, 40, 0, 0], dtype=np.int64)
