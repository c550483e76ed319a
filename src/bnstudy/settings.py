"""Project settings (https://docs.kedro.org/en/stable/configure/configuration_basics/)."""
# ruff: noqa: E402 (the warning filters go in before the imports that load MLflow)

from bnstudy.third_party_warnings import hide_known_deprecations

hide_known_deprecations()  # third_party_warnings.py

from bnstudy.config_loader import CONFIG_LOADER_ARGS
from bnstudy.reliability.hooks import PreflightHooks, RunRecordHooks
from bnstudy.roster import RosterHooks
from bnstudy.viz_hooks import VizStatsHooks
from bnstudy.xla_hooks import XlaFlagsHooks

# docs/reliability.md: checks before the first node (tracking server reachable, --params keys
# known, model parameters valid), then stale MLflow runs marked KILLED, this run tagged with
# its process, and a last line naming the report and the MLflow run. kedro-mlflow's own hook
# is registered by its plugin entry point. VizStatsHooks: the real size of each saved version
# for kedro viz (viz_hooks.py). XlaFlagsHooks: bnstudy's CPU flags in XLA_FLAGS before JAX
# starts, and JAX's persistent compilation cache in <project>/.jax_cache (core/backend.py). RosterHooks: the run's roster (parameters_roster.yml) to the
# pipeline registry before Kedro reads the pipelines (roster.py).
HOOKS = (XlaFlagsHooks(), PreflightHooks(), RosterHooks(), RunRecordHooks(), VizStatsHooks())

__all__ = ["CONFIG_LOADER_ARGS", "HOOKS"]  # CONFIG_LOADER_ARGS: how conf/ is read (config_loader.py)
