"""Starts every ``kedro run`` of this project with bnstudy's CPU flags for XLA.

:func:`bnstudy.core.backend.use_cpu_flags` adds them to ``XLA_FLAGS``; XLA reads that variable
once, when JAX starts its first backend, which in a ``kedro run`` is the training node, long
after this hook. A flag already set in ``XLA_FLAGS`` wins, and ``BNSTUDY_XLA_CPU_FLAGS=0`` turns
the hook off. The run record keeps the ``XLA_FLAGS`` that training ran with (report: Setup).
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from bnstudy.core.backend import use_cpu_flags

logger = logging.getLogger(__name__)


class XlaFlagsHooks:
    """Sets ``XLA_FLAGS`` before anything in the run starts JAX."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """The first hook of a session: nothing has computed with JAX yet."""
        del context
        logger.debug("XLA_FLAGS=%s", use_cpu_flags())
