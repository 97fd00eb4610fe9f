"""timm models: made by name from scratch or local weights, their input config, and weight
sets (tensors and config) as training writes and evaluation, prediction and export read."""

from visrec.core.models.artifact import (
    CARD_FILE,
    CONFIG_FILE,
    TIMM_KEYS,
    WEIGHTS_FILE,
    BalanceSummary,
    InputFields,
    WeightSet,
    WeightSetConfig,
    make_weight_set,
    model_from_weight_set,
    read_weight_set,
    weights_digest,
    write_weight_set,
)
from visrec.core.models.devices import select_device
from visrec.core.models.embedding import (
    EmbedderConfig,
    EmbeddingNet,
    NormalizedFeatures,
    embedder_from_weight_set,
    make_embedder,
    trunk_features,
)
from visrec.core.models.factory import (
    cache_resolution,
    default_input_size,
    make_classifier,
    model_inputs,
    residual_blocks,
    set_backbone_frozen,
    set_zero_gamma,
)
from visrec.core.models.inputs import ModelInputs, resolve_input_config
from visrec.core.models.weights import (
    WeightsError,
    load_backbone_weights,
    load_teacher,
    timm_api,
)

__all__ = [
    "CARD_FILE", "CONFIG_FILE", "TIMM_KEYS", "WEIGHTS_FILE", "BalanceSummary",
    "EmbedderConfig", "EmbeddingNet", "InputFields", "ModelInputs", "NormalizedFeatures",
    "WeightSet", "WeightSetConfig",
    "WeightsError", "cache_resolution", "default_input_size", "embedder_from_weight_set",
    "load_backbone_weights", "load_teacher", "make_classifier", "make_embedder",
    "make_weight_set",
    "model_from_weight_set", "model_inputs", "read_weight_set", "residual_blocks",
    "resolve_input_config", "select_device", "set_backbone_frozen", "set_zero_gamma",
    "timm_api", "trunk_features", "weights_digest", "write_weight_set",
]
