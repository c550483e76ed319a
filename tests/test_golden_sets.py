"""Which saved set of golden traces a machine compares with (tests/golden/make_golden.py)."""

from __future__ import annotations

import json

from tests.golden import make_golden


def test_the_vector_instruction_set_is_read_from_the_cpu_flags():
    assert make_golden.vector_isa(["model name : AMD EPYC", "flags : fpu sse2 avx2 avx512f avx512bw"]) == "avx512"
    assert make_golden.vector_isa(["flags : fpu sse2 avx avx2 fma"]) == "avx2"
    assert make_golden.vector_isa(["flags : fpu sse2"]) == "sse"


def test_a_set_matches_on_every_field_it_names(tmp_path, monkeypatch):
    """Two AMD EPYC VMs with and without AVX-512 get different sets; a set recorded before the
    instruction set was kept matches on the fields it has."""
    versions = {"jax": "0.10.2", "jaxlib": "0.10.2", "python": "3.11.7"}
    for name, machine in {"amd_epyc": {"cpu": "AMD EPYC", "isa": "avx2", **versions},
                          "amd_epyc_avx512": {"cpu": "AMD EPYC", "isa": "avx512", **versions},
                          "intel_xeon": {"cpu": "Intel Xeon Processor", **versions}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "machine.json").write_text(json.dumps({"machine": machine}))
    monkeypatch.setattr(make_golden, "GOLDEN", tmp_path)
    for cpu, isa, expected in [("AMD EPYC", "avx512", "amd_epyc_avx512"), ("AMD EPYC", "avx2", "amd_epyc"),
                               ("Intel Xeon Processor", "avx512", "intel_xeon"), ("AMD EPYC", "sse", None)]:
        monkeypatch.setattr(make_golden, "machine", lambda cpu=cpu, isa=isa: {"cpu": cpu, "isa": isa, **versions})
        found = make_golden.saved_set()
        assert (found.name if found else None) == expected, (cpu, isa)
