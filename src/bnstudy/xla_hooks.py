"""Starts every ``kedro run`` of this project with bnstudy's CPU flags for XLA and JAX's
persistent compilation cache.

:func:`bnstudy.core.backend.use_cpu_flags` adds the flags to ``XLA_FLAGS``; XLA reads that
variable once, when JAX starts its first backend, which in a ``kedro run`` is the training node,
long after this hook. A flag already set in ``XLA_FLAGS`` wins, and ``BNSTUDY_XLA_CPU_FLAGS=0``
leaves the flags alone. The run record keeps the ``XLA_FLAGS`` that training ran with (report:
Setup). :func:`bnstudy.core.backend.use_compilation_cache` keeps compiled programs in the
project's ``.jax_cache/`` (``BNSTUDY_JAX_CACHE`` moves it or, as ``0``, turns it off), so a
second run of the same programs loads them instead of compiling them again.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from bnstudy.core.backend import use_compilation_cache, use_cpu_flags

logger = logging.getLogger(__name__)


class XlaFlagsHooks:
    """Sets ``XLA_FLAGS`` and the compilation cache before anything in the run starts JAX."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """The first hook of a session: nothing has computed with JAX yet."""
        logger.debug("XLA_FLAGS=%s", use_cpu_flags())
        logger.debug("JAX compilation cache: %s", use_compilation_cache(context.project_path))
