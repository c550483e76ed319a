"""The roster: the models of the project and the studies that train and compare them.

A study is configuration, not code (``conf/base/parameters_roster.yml``)::

    models:                       # one entry per model: its normalization and any override
      baseline: {normalization: none}
      candidate: {normalization: batch, training: {learning_rate: 0.1}}
    studies:
      full_study:
        models: [baseline, candidate]          # trained by this study's pipeline
        comparisons: [{reference: baseline, treatment: candidate}]
      beyond_study:
        extends: full_study                    # reads full_study's models, trains its own
        models: [candidate_noisy]
        comparisons: [{reference: candidate, treatment: candidate_noisy}]
      optimizer_fidelity_study:
        extends: [full_study, paper_optimizer_study]   # several: reads the models of each
        models: []                                     # trains none

A model's settings are the shared sections (``architecture``, ``training``, ``measurements``,
``checkpoints``) with its overrides merged over them key by key
(:func:`model_settings`), so no model repeats what every model shares.

Kedro builds its pipelines before it loads the parameters, and the roster decides which
pipelines exist. :func:`pipeline_roster` reads it through Kedro's public configuration API:
the run's own config loader when a Kedro context exists (:class:`RosterHooks` hands it over in
``after_context_created``, before ``KedroSession.run`` first reads the pipelines), otherwise an
``OmegaConfigLoader`` over ``conf/`` with the project's settings (``kedro registry list``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from kedro.framework.hooks import hook_impl
from pydantic import BaseModel, ConfigDict, Strict

from bnstudy.core.config import STRICT
from bnstudy.errors import ParameterError

SHARED_SECTIONS = ("architecture", "training", "measurements", "checkpoints")
"""The settings every model shares; a roster entry overrides single keys of them."""
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FIX = "Fix it in conf/<env>/parameters_roster.yml (or in --params)."
Name = Annotated[str, Strict()]
Names = Annotated[tuple[Name, ...], Strict(False)]  # a YAML list
REGISTRY = "bnstudy.pipeline_registry"


class _Strict(BaseModel):
    model_config = ConfigDict(**STRICT, frozen=True)


class RosterModel(_Strict):
    """``models.<name>``: a model of the roster."""

    normalization: Name
    architecture: dict[str, Any] = {}
    training: dict[str, Any] = {}
    measurements: list[Any] | None = None
    checkpoints: dict[str, Any] = {}

    @property
    def parents(self) -> tuple[str, ...]:
        """The studies this one extends (``extends``: one name, a list of them, or none)."""
        if self.extends is None:
            return ()
        return (self.extends,) if isinstance(self.extends, str) else tuple(self.extends)

    def overrides(self) -> dict[str, Any]:
        """The shared sections this model changes, as given."""
        given = self.model_dump(exclude={"normalization"}, exclude_none=True)
        return {key: value for key, value in given.items() if value != {}}


class Comparison(_Strict):
    """One comparison of a study: ``treatment`` against ``reference``."""

    reference: Name
    treatment: Name


DATA_KINDS = ("cifar10", "linear_regression")
"""What a study trains on: CIFAR-10 (the VGG's) or the deep linear network's synthetic
regression (``linear_data``)."""
STUDY_SECTIONS = ("analysis", "reporting")
"""The shared sections a study may override key by key (``studies.<name>.reporting``)."""


class Study(_Strict):
    """``studies.<name>``: the models a study trains and the comparisons it makes, the data
    it trains them on, and its overrides of the shared ``analysis`` and ``reporting``."""

    models: Names
    extends: Name | Names | None = None
    comparisons: Annotated[tuple[Comparison, ...], Strict(False)] = ()
    data: Literal[DATA_KINDS] = "cifar10"
    analysis: dict[str, Any] = {}
    reporting: dict[str, Any] = {}

    @property
    def parents(self) -> tuple[str, ...]:
        """The studies this one extends (``extends``: one name, a list of them, or none)."""
        if self.extends is None:
            return ()
        return (self.extends,) if isinstance(self.extends, str) else tuple(self.extends)

    def overrides(self) -> dict[str, Any]:
        """The shared sections this study changes (:data:`STUDY_SECTIONS`), as given."""
        return {section: getattr(self, section) for section in STUDY_SECTIONS
                if getattr(self, section)}


class Roster(_Strict):
    """The ``models`` and ``studies`` parameters, checked against each other."""

    models: dict[Name, RosterModel]
    studies: dict[Name, Study]

    def trained_by(self, study: str) -> tuple[str, ...]:
        """The models the study's pipeline trains."""
        return self.studies[study].models

    def compared_in(self, study: str) -> tuple[str, ...]:
        """Every model a study's analysis reads: those of the studies it extends (in the order
        of ``extends``), then its own."""
        compared: list[str] = []
        for parent in self.studies[study].parents:
            compared += [m for m in self.compared_in(parent) if m not in compared]
        return tuple(compared + [m for m in self.studies[study].models if m not in compared])

    def normalization(self, model: str) -> str:
        return self.models[model].normalization

    def data(self, study: str) -> str:
        """What ``study`` trains on (:data:`DATA_KINDS`)."""
        return self.studies[study].data

    def study_settings(self, shared: Mapping[str, Any], study: str) -> dict[str, Any]:
        """The ``analysis`` and ``reporting`` sections of ``study``: the shared ones with the
        study's overrides merged over them, key by key."""
        entry = self.studies[study]
        return {section: merged(shared.get(section), getattr(entry, section) or None)
                for section in STUDY_SECTIONS}


def roster_from_parameters(params: Mapping[str, Any]) -> Roster:
    """The roster of a parameter tree (its ``models`` and ``studies``).

    Raises:
        ParameterError: naming the entry that is wrong and how to fix it.
    """
    for key in ("models", "studies"):
        if not isinstance(params.get(key), Mapping) or not params[key]:
            raise ParameterError(f"Parameter {key} = {params.get(key)!r}: expects a mapping of "
                                 f"names to entries (conf/base/parameters_roster.yml). {FIX}")
    for kind in ("models", "studies"):
        for name in params[kind]:
            if not isinstance(name, str) or not NAME.match(name):
                raise ParameterError(
                    f"Parameter {kind}.{name}: a name is lower-case letters, digits and '_', "
                    f"starting with a letter (it becomes a Kedro namespace and a folder). {FIX}")
    try:
        roster = Roster.model_validate({"models": dict(params["models"]),
                                        "studies": dict(params["studies"])})
    except pydantic.ValidationError as error:
        first = error.errors(include_url=False)[0]
        path = ".".join(str(part) for part in first["loc"])
        raise ParameterError(f"Parameter {path} = {first.get('input')!r}: {first['msg']}. "
                             f"{FIX}") from None
    _check_references(roster)
    return roster


def _check_extends(roster: Roster, name: str, chain: tuple[str, ...] = ()) -> None:
    """Every study ``name`` extends exists, trains on the same data, and none extends itself
    through the others."""
    chain = (*chain, name)
    for parent in roster.studies[name].parents:
        if parent not in roster.studies:
            raise ParameterError(f"Parameter studies.{name}.extends = {parent!r}: no such "
                                 f"study; the studies are {sorted(roster.studies)}. {FIX}")
        if parent in chain:
            raise ParameterError(f"Parameter studies.{chain[0]}.extends: the studies extend each "
                                 f"other in a circle ({' -> '.join((*chain, parent))}). {FIX}")
        if roster.studies[parent].data != roster.studies[name].data:
            raise ParameterError(
                f"Parameter studies.{name}.data = {roster.studies[name].data!r}, but the study it "
                f"extends, {parent!r}, trains on {roster.studies[parent].data!r}: models "
                f"trained on different data are not compared. {FIX}")
        _check_extends(roster, parent, chain)


def _check_references(roster: Roster) -> None:
    trained: dict[str, str] = {}
    for name, study in roster.studies.items():
        _check_extends(roster, name)
        for model in study.models:
            if model not in roster.models:
                raise ParameterError(f"Parameter studies.{name}.models names {model!r}, which is "
                                     f"not in models ({sorted(roster.models)}). {FIX}")
            if model in trained:
                raise ParameterError(
                    f"Parameter studies.{name}.models: {model!r} is trained by study "
                    f"{trained[model]!r} already; a study that compares with it names that "
                    f"study in `extends` instead. {FIX}")
            trained[model] = name
        known = roster.compared_in(name)
        for index, comparison in enumerate(study.comparisons):
            if comparison.reference == comparison.treatment:
                raise ParameterError(f"Parameter studies.{name}.comparisons[{index}] compares "
                                     f"{comparison.reference!r} with itself. {FIX}")
            for role in ("reference", "treatment"):
                model = getattr(comparison, role)
                if model not in known:
                    raise ParameterError(
                        f"Parameter studies.{name}.comparisons[{index}].{role} = {model!r}: the "
                        f"study has the models {list(known)}. {FIX}")


def model_settings(shared: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """One model's parameters: its roster ``entry``'s ``normalization``, and the ``shared``
    sections (:data:`SHARED_SECTIONS`) with the entry's overrides merged over them
    (mappings key by key; lists and values replaced)."""
    settings: dict[str, Any] = {"normalization": entry.get("normalization")}
    for section in SHARED_SECTIONS:
        settings[section] = merged(shared.get(section), entry.get(section))
    return settings


def merged(base: Any, override: Any) -> Any:
    """``override`` over ``base``: mappings merged key by key, anything else replaced."""
    if override is None:
        return base
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        return {**base, **{key: merged(base.get(key), value) for key, value in override.items()}}
    return override


# ------------------------------------------------------------ the roster the pipelines are built from

_LOADED: dict[str, Any] = {}


def use_parameters(params: Mapping[str, Any]) -> bool:
    """Build the pipelines from this parameter tree's roster from now on (the run's own,
    handed over by :class:`RosterHooks`). True when the roster differs from the one in use."""
    roster = roster_from_parameters(params)
    changed = _LOADED.get("roster") != roster
    _LOADED["roster"] = roster
    return changed


def pipeline_roster() -> Roster:
    """The roster of the run being set up, else that of ``conf/`` in the environment
    ``KEDRO_ENV`` (Kedro's default environment when unset)."""
    if "roster" not in _LOADED:
        _LOADED["roster"] = roster_from_parameters(_configured_parameters())
    return _LOADED["roster"]


def _configured_parameters() -> dict[str, Any]:
    """The parameters of ``conf/`` in the working directory, loaded as ``settings.py`` says."""
    from kedro.config import OmegaConfigLoader

    from bnstudy.config_loader import CONFIG_LOADER_ARGS

    conf = Path.cwd() / "conf"
    if not conf.is_dir():
        raise ParameterError(f"No configuration folder at {conf}: run Kedro from the project's "
                             "root (the folder with pyproject.toml and conf/).")
    loader = OmegaConfigLoader(conf_source=str(conf), env=os.environ.get("KEDRO_ENV"),
                               **CONFIG_LOADER_ARGS)
    return loader["parameters"]


class RosterHooks:
    """Hands the run's parameters to the pipeline registry (see the module docstring)."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Before ``KedroSession.run`` reads the pipelines: rebuild them when the run's
        roster differs from the one they were built from."""
        from kedro.framework.project import pipelines

        if use_parameters(context.config_loader["parameters"]):
            pipelines.configure(REGISTRY)
