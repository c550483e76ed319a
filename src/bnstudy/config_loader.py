"""Kedro's OmegaConfigLoader, except that ``--params`` overrides one model only.

Both models take their shared settings from globals.yml (``training: ${globals:training}``).
Kedro merges the runtime parameters into the still-unresolved configuration with
``OmegaConf.unsafe_merge``, which writes through the interpolation into the shared globals:
``--params baseline.training.learning_rate=1000`` then changed the candidate's learning rate
too (measured with Kedro 1.7: both 1000.0). Here the files are resolved first, into plain
copies, and the runtime parameters are merged into those.
"""

from __future__ import annotations

from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf


class StudyConfigLoader(OmegaConfigLoader):
    """OmegaConfigLoader whose runtime parameters never reach a shared (globals) node."""

    def _merge_and_resolve(self, key: str, config_per_file: dict) -> dict[str, Any]:
        if key != "parameters" or not config_per_file or not self.runtime_params:
            return super()._merge_and_resolve(key, config_per_file)
        resolved = OmegaConf.to_container(OmegaConf.unsafe_merge(*config_per_file.values()), resolve=True)
        merged = OmegaConf.merge(OmegaConf.create(resolved), OmegaConf.create(self.runtime_params))
        return OmegaConf.to_container(merged, resolve=True)
