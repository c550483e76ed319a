"""The deprecation notices that bnstudy's dependencies raise about their own code, silenced
so that a user's error message is the first thing they read (it came after 60-95 lines of
them).

Each entry names the exact message and the module that raises it, so only that notice from
that place is dropped; the same message from bnstudy's own code, and every other warning,
are shown as before. They are stopped where they are raised, by Python's warning filters,
but for MLflow's: ``mlflow.utils.annotations.filter_user_warnings_once`` wraps the code that
raises it in ``catch_warnings(); simplefilter("once", UserWarning)``, which outranks any
filter installed outside. That one is dropped from the ``py.warnings`` logger, to which
Kedro routes warnings, by :class:`KnownDeprecations`.
"""

from __future__ import annotations

import logging
import re
import warnings

KNOWN = (
    # OmegaConf 2.4 deprecates register_new_resolver; Kedro's OmegaConfigLoader and
    # kedro-mlflow's hook still call it, once per run and resolver.
    ("register_new_resolver\\(\\) is deprecated", "kedro\\.config\\.omegaconf_config"),
    ("register_new_resolver\\(\\) is deprecated",
     "kedro_mlflow\\.framework\\.hooks\\.mlflow_hook"),
    # MLflow 3 warns, when kedro-mlflow's pipeline model class is defined, that its predict
    # method has no type hints (a PythonModel of kedro-mlflow's, not bnstudy's).
    ("\\x1b\\[\\d+(;\\d+)?mAdd type hints to the `predict` method",
     "mlflow\\.pyfunc\\.utils\\.data_validation"),
)
"""(message regex, module regex) of each notice, as :func:`warnings.filterwarnings` takes
them (both matched from their start)."""


class KnownDeprecations(logging.Filter):
    """Drops a ``py.warnings`` record of a notice of :data:`KNOWN`: the record's text is
    ``<path of the raising module>:<line>: <category>: <message>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for message, module in KNOWN:
            path = module.replace("\\.", "[/\\\\]")
            if re.search(f"{path}\\.py:\\d+: \\w+: {message}", text):
                return False
        return True


def hide_known_deprecations() -> None:
    """Install the warning filters of :data:`KNOWN` and :class:`KnownDeprecations` on the
    ``py.warnings`` logger (idempotent)."""
    for message, module in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=UserWarning, module=module)
    logger = logging.getLogger("py.warnings")
    if not any(isinstance(f, KnownDeprecations) for f in logger.filters):
        logger.addFilter(KnownDeprecations())
