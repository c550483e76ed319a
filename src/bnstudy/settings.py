"""Project settings (https://docs.kedro.org/en/stable/configure/configuration_basics/)."""

from omegaconf.resolvers import oc

from bnstudy.reliability.hooks import PreflightHooks, RunRecordHooks
from bnstudy.roster import RosterHooks
from bnstudy.viz_hooks import VizStatsHooks
from bnstudy.xla_hooks import XlaFlagsHooks

# docs/reliability.md: checks before the first node (tracking server reachable, --params keys
# known, model parameters valid), then stale MLflow runs marked KILLED, this run tagged with
# its process, and a last line naming the report and the MLflow run. kedro-mlflow's own hook
# is registered by its plugin entry point. VizStatsHooks: the real size of each saved version
# for kedro viz (viz_hooks.py). XlaFlagsHooks: bnstudy's CPU flags in XLA_FLAGS before JAX
# starts (core/backend.py). RosterHooks: the run's roster (parameters_roster.yml) to the
# pipeline registry before Kedro reads the pipelines (roster.py).
HOOKS = (XlaFlagsHooks(), PreflightHooks(), RosterHooks(), RunRecordHooks(), VizStatsHooks())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    # `kedro run` without --env uses conf/local on top of conf/base (local is git-ignored,
    # for a user's own overrides); the README's commands name an environment explicitly.
    "default_run_env": "local",
    # Kedro enables ${oc.env:...} only for credentials by default; parameters use it to take
    # the data source from BNSTUDY_CIFAR10_SOURCE / BNSTUDY_CIFAR10_PATH.
    "custom_resolvers": {"oc.env": oc.env},
    # conf/cpu and conf/test override single keys of conf/base, not whole sections.
    "merge_strategy": {
        "parameters": "soft", "globals": "soft", "mlflow": "soft", "catalog": "soft",
    },
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    },
}
