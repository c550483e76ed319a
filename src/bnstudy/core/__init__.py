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
    ProgramConfig,
    Run,
    TrainConfig,
)
from bnstudy.core.measurements import (
    QUANTILE_LEVELS,
    activation_statistics,
    compare_gradients,
    distance_from_init,
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
from bnstudy.core.plan import Computation, MeasurementPlan
from bnstudy.core.programs import COMPILE_COUNTS
from bnstudy.core.results import TrainingResult
from bnstudy.core.state import TrainState, init_state, init_states
from bnstudy.core.step import Spec, train_step
from bnstudy.core.training import (
    batched_for_eval,
    epoch_permutations,
    train,
    train_seeds,
)

__all__ = [
    "COMPILE_COUNTS", "PRESETS", "QUANTILE_LEVELS", "TINY_MODEL_CONFIG", "TINY_TRAIN_CONFIG",
    "VGG", "Computation", "MeasurementConfig", "MeasurementPlan", "ModelConfig",
    "ProgramConfig", "PureModel", "Run", "Spec", "TrainConfig", "TrainState", "TrainingResult",
    "activation_statistics",
    "batched_for_eval", "compare_gradients", "count_parameters", "cross_entropy",
    "distance_from_init", "epoch_permutations", "init_state", "init_states", "layer_names",
    "leaf_paths", "probe_gradient_direction", "train", "train_seeds", "train_step",
]
