"""The LSTM sequence recommender: an LSTM over a customer's recent interactions (items with
their side features, sizes and interaction types) that scores the items of the next basket.

``SequenceRecommender(SequenceConfig(...), item_features=ItemFeatures.from_frame(items,
item_ids)).fit(data, sizes=sizes)``, then ``recommend`` / ``recommend_from_sequence``; ``save``
and ``load`` a model directory. Modules: :mod:`.config` (hyperparameters), :mod:`.encoding`
(integer codes), :mod:`.network` (torch), :mod:`.numpy_lstm` (single-request inference),
:mod:`.windows` (data preparation), :mod:`.fitting` (training loop), :mod:`.recommender`.
"""

from .config import SequenceConfig, SequenceHyperparameters
from .encoding import CATEGORICAL_FEATURES, UNKNOWN, ItemFeatures
from .network import SequenceNet
from .recommender import SequenceInput, SequenceRecommender, repeat_features

__all__ = [
    "CATEGORICAL_FEATURES",
    "UNKNOWN",
    "ItemFeatures",
    "SequenceConfig",
    "SequenceHyperparameters",
    "SequenceInput",
    "SequenceNet",
    "SequenceRecommender",
    "repeat_features",
]
