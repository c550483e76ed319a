"""The kinds of user error: mistakes a person can fix, each with a message that says how.

This module depends on nothing of the project, so any layer can raise these (the parameter
models, the roster, the reliability guards) without importing another. How a user error is
shown (one line instead of a traceback) is :mod:`bnstudy.reliability.errors`.
"""

from __future__ import annotations


class UserError(ValueError):
    """A setting, an input or the environment is wrong; the message says how to fix it."""


class ParameterError(UserError):
    """A parameter (YAML or ``--params``) has an unknown key or an invalid value."""


class TrackingServerUnreachable(UserError):
    """The MLflow tracking server named by the configuration does not answer."""


class ProjectBusyError(UserError):
    """Another ``kedro run`` holds this project's lock."""
