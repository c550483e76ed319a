"""Write the saved traces that ``tests/pipelines/test_numbers_unchanged.py`` holds every later
version of the code to (issue 20: "the numbers do not move").

Run once, before a redesign that must not change any number, from the checkout's root:

    .venv/bin/python tests/golden/make_golden.py [test_study] [cpu_steps]

It runs, each in a throw-away copy of the project (as the session tests do):

- ``test_study``: ``full_study`` in the ``test`` environment (3 seeds, 20 steps, both
  protocols, curvature at steps 0 and 10) on the offline JPEG copy of CIFAR-10;
- ``cpu_steps``: the training pipeline of the ``cpu`` environment (the cpu demo's network and
  data) for 3 steps, reading only the subset it keeps.

and copies every per-model trace (Parquet) and the activation histograms (``.npz``) under
``tests/golden/<run>/<model>/``, with ``machine.json`` naming the processor and library
versions they were computed with.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import STUDY_SOURCE, make_project_copy, run_session  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
MODELS = ("baseline", "candidate")
CPU_STEPS = 3
RUNS = {  # run -> (its pipelines, one session each; the environment)
    "test_study": (("full_study",), "test"),
    "cpu_steps": (("data_ingestion", "preprocessing", "training"), "cpu"),
}


def newest(folder: Path) -> Path:
    """The file of the newest version of a versioned dataset folder."""
    versions = sorted(p for p in folder.iterdir() if p.is_dir())
    return versions[-1] / folder.name


def copy_traces(project: Path, target: Path) -> list[str]:
    copied = []
    for model in MODELS:
        outputs = project / "data" / "07_model_output" / model
        (target / model).mkdir(parents=True, exist_ok=True)
        for folder in sorted(outputs.iterdir()):
            if folder.suffix in (".parquet", ".npz"):
                shutil.copy(newest(folder), target / model / folder.name)
                copied.append(f"{model}/{folder.name}")
    return copied


def machine() -> dict[str, str]:
    import jax
    import jaxlib

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "python": platform.python_version()}


def main(only: list[str]) -> None:
    path = GOLDEN / "machine.json"
    record = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    record["machine"] = machine()
    for run, (pipelines, env) in RUNS.items():
        if only and run not in only:
            continue
        params = cpu_steps_params() if run == "cpu_steps" else STUDY_SOURCE
        with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as monkeypatch:
            project = make_project_copy(Path(tmp), monkeypatch)
            for name in pipelines:
                run_session(project, name, env=env, params=params)
            target = GOLDEN / run
            shutil.rmtree(target, ignore_errors=True)
            record["runs"][run] = {"env": env, "params": params,
                                   "files": copy_traces(project, target)}
    path.write_text(json.dumps(record, indent=2) + "\n")


def cpu_steps_params() -> dict:
    return {**STUDY_SOURCE, "data_ingestion": {**STUDY_SOURCE["data_ingestion"], "subset_only": True},
            "training": {"max_steps": CPU_STEPS}}


if __name__ == "__main__":
    main(sys.argv[1:])  # optional: the runs to make (default: all)
