"""How ``conf/`` is read: the arguments of Kedro's ``OmegaConfigLoader``.

``settings.py`` hands them to Kedro; the roster (:func:`bnstudy.roster.pipeline_roster`, which
reads the parameters before a session exists) and the tests load ``conf/`` with the same ones.
A module of its own, importing nothing of the project, because ``settings.py`` imports every
hook (and through them the parameter models): a module that only needs to read ``conf/``
would otherwise import them all.
"""

from omegaconf.resolvers import oc

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
