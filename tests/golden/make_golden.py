"""Record the traces that ``tests/pipelines/test_numbers_unchanged.py`` holds every later
version of the code to (issue 20: "the numbers do not move"), computed by the code from
before the roster redesign (commit :data:`SOURCE_COMMIT`), on this machine.

XLA:CPU's float32 results depend on the processor: its kernels use the vector width and
instructions the CPU has, so the last bits of a sum differ and grow over a few training steps
(on an AMD EPYC VM, commit 7301c74's own ICS of the cpu network differs by 0.5% at step 0 from
what it computed on an Intel Xeon VM). A bitwise check of the redesigned code therefore needs
traces that the old code computed on the same kind of processor. Each set lives in
``tests/golden/<set>/`` with ``machine.json`` naming the processor, its vector instruction set
(:func:`vector_isa`) and the library versions;
the test picks the set of its machine, and on a processor with no set it records one itself
into a temporary folder (:func:`record`, a few minutes, needs the commit in the clone's
history).

To add a set for this machine, from the checkout's root:

    .venv/bin/python tests/golden/make_golden.py <set name>      # e.g. amd_epyc_avx512

It extracts :data:`SOURCE_COMMIT` with ``git archive`` into a temporary folder and runs there,
with that tree's own package (``PYTHONPATH``) and configuration, one ``kedro run`` per run of
:data:`RUNS`:

- ``test_study``: ``full_study`` in the ``test`` environment (3 seeds, 20 steps, both
  protocols, curvature at steps 0 and 10) on the offline JPEG copy of CIFAR-10;
- ``cpu_steps``: the training pipeline of the ``cpu`` environment (the cpu demo's network and
  data) for 3 steps, reading only the subset it keeps.

and copies every per-model trace (Parquet) and the activation histograms (``.npz``).
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import SHARED_JPEG_ARCHIVE, STUDY_SOURCE  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
SOURCE_COMMIT = "7301c74"  # the last commit before the roster redesign
MODELS = ("baseline", "candidate")
CPU_STEPS = 3
# run -> (pipelines, environment, --params in the layout of SOURCE_COMMIT: per-model sections)
RUNS = {
    "test_study": (("full_study",), "test", STUDY_SOURCE),
    "cpu_steps": (("data_ingestion", "preprocessing", "training"), "cpu",
                  {"data_ingestion": {**STUDY_SOURCE["data_ingestion"], "subset_only": True},
                   **{model: {"training": {"max_steps": CPU_STEPS}} for model in MODELS}}),
}


def machine() -> dict[str, str]:
    """The processor and the library versions a set of traces was computed with."""
    import jax
    import jaxlib

    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "isa": vector_isa(lines), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "python": platform.python_version()}


def vector_isa(cpuinfo: list[str]) -> str:
    """The widest vector instructions the processor has (``avx512``, ``avx2`` or ``sse``): a VM
    reports "AMD EPYC" for Zen 3 (AVX2) and Zen 4 (AVX-512) alike, and XLA:CPU's kernels, so
    their float32 rounding, follow the instructions, not the name."""
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), []))
    return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"


def saved_set() -> Path | None:
    """The folder of the set recorded on this kind of machine, if there is one: every field
    its ``machine.json`` names equals this machine's (a set recorded before ``isa`` was kept
    matches on the others)."""
    mine = machine()
    for record in sorted(GOLDEN.glob("*/machine.json")):
        theirs = json.loads(record.read_text())["machine"]
        if all(mine.get(key) == value for key, value in theirs.items()):
            return record.parent
    return None


def has_source_commit() -> bool:
    return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{SOURCE_COMMIT}^{{commit}}"],
                          capture_output=True, check=False).returncode == 0


def dotted(params: dict, prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}}`` -> ``["a.b=1"]``, the form of ``kedro run --params``."""
    items = []
    for key, value in params.items():
        if isinstance(value, dict):
            items += dotted(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={json.dumps(value) if isinstance(value, bool) else value}")
    return items


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


def extract_source(into: Path) -> Path:
    """:data:`SOURCE_COMMIT`'s tree, from ``git archive``, in ``into/project``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", SOURCE_COMMIT],
                             capture_output=True, check=True).stdout
    project = into / "project"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(project, filter="data")
    return project


def run_old_code(project: Path, pipelines: tuple[str, ...], env: str, params: dict) -> None:
    """``kedro run`` of the extracted tree's own package and configuration, in a process of
    its own; its MLflow store and data stay in the tree."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("BNSTUDY_CIFAR10_", "MLFLOW_"))}
    environment.update(PYTHONPATH=str(project / "src"), KEDRO_DISABLE_TELEMETRY="1",
                       MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}")
    for name in pipelines:
        run = subprocess.run([sys.executable, "-m", "kedro", "run", "--env", env, "--pipelines", name,
                              "--params", ",".join(dotted(params))],
                             cwd=project, env=environment, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"{SOURCE_COMMIT}'s `kedro run --pipelines {name}` failed:\n"
                               f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}")


def record(target: Path, runs: list[str] | None = None) -> Path:
    """Compute the runs (default: all) with :data:`SOURCE_COMMIT`'s code on this machine and
    write them, with ``machine.json``, under ``target``; returns ``target``."""
    if not SHARED_JPEG_ARCHIVE.exists():
        raise FileNotFoundError(f"the golden runs read the offline CIFAR-10 copy at {SHARED_JPEG_ARCHIVE}")
    if not has_source_commit():
        raise LookupError(f"commit {SOURCE_COMMIT} is not in this clone's history; "
                          "fetch it (git fetch --unshallow) to record traces for this machine")
    path = target / "machine.json"
    entry = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    entry.update(machine=machine(), commit=SOURCE_COMMIT)
    for run, (pipelines, env, params) in RUNS.items():
        if runs and run not in runs:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            project = extract_source(Path(tmp))
            run_old_code(project, pipelines, env, params)
            shutil.rmtree(target / run, ignore_errors=True)
            entry["runs"][run] = {"env": env, "params": params,
                                  "files": copy_traces(project, target / run)}
    target.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry, indent=2) + "\n")
    return target


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: {sys.argv[0]} <set name, e.g. amd_epyc> [test_study] [cpu_steps]")
    sys.stdout.write(f"{record(GOLDEN / sys.argv[1], sys.argv[2:] or None)}\n")
