"""The report's Setup: where the data came from and how the study was run, as a table.

Read from the ingestion's ``cifar10_provenance`` and the ``preprocessing`` parameters (or the
deep linear network's ``linear_data_provenance``), the run
records of every model of the study (configs, seeds, versions, device, wall time; the shared
settings from the first) and the ``reporting`` parameters (the configuration environment).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bnstudy.analysis.divergence import record_divergence
from bnstudy.core.config import ModelConfig
from bnstudy.reporting.document import Table

Record = Mapping[str, Any]
OFFICIAL = "official archive (cifar-10-python.tar.gz, the original pixels)"


def data_kind(provenance: Record) -> str:
    """Whether the images are the official archive's or a re-encoded copy (e.g. JPEG)."""
    source = provenance.get("source")
    if source == "download":
        return f"{OFFICIAL}, downloaded from {provenance.get('url', '?')}"
    if source == "python_archive":
        return OFFICIAL
    location = str(provenance.get("location", "")).lower()
    if "jpeg" in location or "jpg" in location:
        return "JPEG copy (image folder): re-encoded pixels, not the official archive"
    return "image-folder copy: re-encoded pixels, not the official archive"


def _subset(size: Any, used: Any, split: str, seed: Any) -> str:
    if size is None:
        return f"{used:,} {split} images (all of the source's)"
    return f"{used:,} {split} images (class-stratified subset of size {size}, preprocessing seed {seed})"


def linear_data_rows(provenance: Record, records: Mapping[str, Record]) -> list[list[str]]:
    """The deep linear network's synthetic data: distribution, seed, shapes, checksum."""
    record = next(iter(records.values()))
    d = provenance.get("dimension", "?")
    return [
        ["data source", f"synthetic linear regression (pipelines/linear_data): "
                        f"{provenance.get('distribution', '?')}"],
        ["data seed", str(provenance.get("seed", "?"))],
        ["data shapes", f"x, y [{record.get('num_train', '?'):,}, {d}] train; "
                        f"[{record.get('num_test', '?'):,}, {d}] test; A [{d}, {d}]"],
        ["data checksum", str(provenance.get("checksum", "-"))],
    ]


def data_rows(provenance: Record, preprocessing: Record, records: Mapping[str, Record]) -> list[list[str]]:
    """Source, checksum, kind of copy and the subset sizes that training used."""
    if provenance.get("kind") == "linear_regression":
        return linear_data_rows(provenance, records)
    record = next(iter(records.values()))
    checksum = provenance.get("checksum", "-")
    if provenance.get("md5"):
        checksum += f" (md5 {provenance['md5']})"
    seed = preprocessing.get("seed")
    sizes = (f"{_subset(preprocessing.get('train_size'), record.get('num_train'), 'train', seed)}; "
             f"{_subset(preprocessing.get('test_size'), record.get('num_test'), 'test', seed)}")
    return [
        ["data source", f"{provenance.get('source', '?')}: {provenance.get('location', '?')}"],
        ["data checksum", checksum],
        ["data copy", data_kind(provenance)],
        ["source images read", f"{provenance.get('num_train', '?'):,} train / {provenance.get('num_test', '?'):,} test"
         if isinstance(provenance.get("num_train"), int) else "-"],
        ["train / test subset", sizes],
    ]


def _strides(measurements: Sequence[Record]) -> str:
    parts = []
    for m in measurements:
        every = m.get("measure_every", 1)
        parts.append(f"{m.get('name')}: every {'step' if every == 1 else f'{every} steps'} "
                     f"(ICS in {m.get('ics_mode')} mode; probes {m.get('probe_start')}, {m.get('probe_mode')} mode)")
    return "; ".join(parts)


def model_rows(records: Mapping[str, Record]) -> list[list[str]]:
    """Network widths after the width multiplier, optimization, steps, seeds, protocols (the
    first model's; each model's normalization)."""
    record = next(iter(records.values()))
    model = ModelConfig.from_dict(record["model_config"])
    train = record["train_config"]
    if model.family == "dln":
        network = [["network", f"deep linear network: {model.depth} linear layers of {model.width} "
                               f"x {model.width} without bias, Glorot normal; the l2 loss, the mean "
                               "over samples of ||W_k...W_1 x - y||^2"]]
    else:
        multiplier = f" (x {model.width_multiplier:g} of {list(model.conv_features)})" if model.width_multiplier != 1 else ""
        network = [["conv widths (after the width multiplier)", f"{list(model.conv_widths)}{multiplier}"],
                   ["dense widths (after the width multiplier)",
                    f"{list(model.dense_widths)} then {model.num_classes} outputs"]]
    rates = train.get("learning_rates") or [train.get("learning_rate")]
    rate = f"lr {rates[0]}" if len(rates) == 1 else f"lr {', '.join(str(r) for r in rates)} (each seed with each)"
    full_batch = record.get("num_train") == train.get("batch_size")
    return [
        *network,
        ["normalization", "; ".join(f"{name}: {r['model_config']['normalization']}" for name, r in records.items())],
        ["steps", f"{record.get('num_steps', '?'):,} of "
                  f"{'full-batch gradient descent' if full_batch else 'SGD'} ({rate}, momentum "
                  f"{train.get('momentum')}, batch {train.get('batch_size')}, {train.get('epochs')} epochs)"],
        *_moment_rows(records),
        ["seeds", ", ".join(str(s) for s in record.get("seeds", [train.get("seed")]))],
        ["measurement stride per protocol", _strides(record.get("measurement_configs", []))],
        ["matmul precision", str(train.get("matmul_precision", "-"))],
    ]


def _moment_rows(records: Mapping[str, Record]) -> list[list[str]]:
    """The row that says which models trained on the moment set of their samples (none: no
    row)."""
    points = {name: r.get("moment_points") for name, r in records.items()}
    if not any(points.values()):
        return []
    num_train = next(iter(records.values())).get("num_train", "?")
    each = "; ".join(f"{name}: " + (f"its {p} points" if p else "the samples")
                     for name, p in points.items())
    return [["computed on", f"{each}. The moment set is the points with the mean and covariance "
             f"of the {num_train} (x, y) samples, on which the l2 loss with these "
             "normalizations is the same function of the parameters, so every step, measurement "
             "and curvature is that of full-batch gradient descent on the samples, up to "
             "rounding (bnstudy.core.moments); the activation distributions are of the samples"]]


def _same_or_both(records: Mapping[str, Record], value) -> str:
    values = {model: value(record) for model, record in records.items()}
    distinct = set(values.values())
    return distinct.pop() if len(distinct) == 1 else "; ".join(f"{m}: {v}" for m, v in values.items())


def _device(record: Record) -> str:
    runtime = record.get("runtime", {})
    backend = runtime.get("backend", "?")
    sharded = record.get("run_devices", 1)
    mesh = f"; runs sharded over {sharded} devices" if sharded > 1 else ""
    if backend == "cpu":
        return f"CPU: {runtime.get('cpu', '?')} ({runtime.get('device_count', '?')} JAX device(s){mesh})"
    return (f"{backend.upper()}: {runtime.get('device_kind', '?')} x {runtime.get('device_count', '?')} "
            f"(host CPU {runtime.get('cpu', '?')}{mesh})")


def run_rows(records: Mapping[str, Record], environment: str) -> list[list[str]]:
    """Environment, library versions, device and wall time."""
    def versions(record: Record) -> str:
        found = record.get("runtime", {}).get("versions", {})
        return ", ".join(f"{name} {found[name]}" for name in ("jax", "jaxlib", "flax", "optax", "kedro") if name in found)

    wall = "; ".join(f"{name} {float(r.get('wall_time_s', float('nan'))):.1f} s"
                     + (f" (of which compile {float(r['compile_time_s']):.1f} s)" if r.get("compile_time_s") else "")
                     for name, r in records.items())
    return [
        ["environment", f"{environment} (conf/{environment})"],
        ["versions", _same_or_both(records, versions)],
        ["device", _same_or_both(records, _device)],
        ["XLA flags", _same_or_both(records, lambda r: r.get("runtime", {}).get("xla_flags") or "(none)")],
        ["wall time (training, all seeds)", wall],
        ["status", "; ".join(f"{name}: {_status(r)}" for name, r in records.items())],
    ]


def _status(record: Record) -> str:
    """``healthy`` or ``diverged at step k (seed s), ...`` from a run record's per-seed entries."""
    bad = [f"step {step} (seed {seed})" for seed, step in record_divergence(record).items()]
    return "diverged at " + ", ".join(bad) if bad else "healthy (no seed diverged)"


def setup_table(provenance: Record, preprocessing: Record, records: Mapping[str, Record], environment: str) -> Table:
    """The Setup (provenance) table: field | value."""
    rows = data_rows(provenance, preprocessing, records) + model_rows(records) + run_rows(records, environment)
    return Table(["field", "value"], rows)
