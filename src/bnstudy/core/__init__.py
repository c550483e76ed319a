"""Pure JAX/Flax core of bnstudy: configs, the VGG pair, training and measurements.

No Kedro and no MLflow here; usable from a script or a notebook on its own::

    from bnstudy.core import PRESETS, ModelConfig, TrainConfig, train
    result = train(ModelConfig(width_multiplier=0.125), TrainConfig(),
                   [PRESETS["blog"], PRESETS["paper"]], x_train, y_train, x_test, y_test)
"""

from bnstudy.core.config import (
    PRESETS,
    TINY_MODEL_CONFIG,
    TINY_TRAIN_CONFIG,
    MeasurementConfig,
    ModelConfig,
    TrainConfig,
)
from bnstudy.core.measurements import (
    QUANTILE_LEVELS,
    activation_statistics,
    compare_gradients,
    distance_from_init,
    gradient_ics,
    ics_gradients,
    model_probe,
    probe_gradient_direction,
)
from bnstudy.core.models import (
    VGG,
    PureModel,
    count_parameters,
    cross_entropy,
    layer_names,
    leaf_paths,
)
from bnstudy.core.training import (
    TRACE_COUNTS,
    Trainer,
    TrainingResult,
    epoch_permutations,
    get_trainer,
    measurement_cadences,
    run_chunk,
    train,
)

__all__ = [
    "PRESETS", "QUANTILE_LEVELS", "TINY_MODEL_CONFIG", "TINY_TRAIN_CONFIG", "TRACE_COUNTS", "VGG",
    "MeasurementConfig", "ModelConfig", "PureModel", "TrainConfig", "Trainer", "TrainingResult",
    "activation_statistics", "compare_gradients", "count_parameters", "cross_entropy",
    "distance_from_init", "epoch_permutations", "get_trainer", "gradient_ics",
    "ics_gradients", "layer_names", "leaf_paths", "measurement_cadences", "model_probe",
    "probe_gradient_direction", "run_chunk", "train",
]
