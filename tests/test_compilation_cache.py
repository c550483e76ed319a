"""JAX's persistent compilation cache as bnstudy sets it (bnstudy.core.backend): where it goes,
who can move it or turn it off, that the test session uses the checkout's, and that a second
process loads what the first compiled and computes bitwise the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest

from bnstudy import xla_hooks
from bnstudy.core.backend import (
    CACHE_FOLDER,
    CACHE_MIN_COMPILE_TIME_SECS,
    CACHE_SETTING,
    compilation_cache_settings,
)

DIR = "JAX_COMPILATION_CACHE_DIR"
MIN_TIME = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
HIT = "/jax/compilation_cache/cache_hits"  # jax.monitoring events
WRITE = "/jax/compilation_cache/cache_misses"  # recorded when an entry is written


def test_by_default_the_cache_is_the_projects_and_caches_every_program(tmp_path):
    assert compilation_cache_settings(tmp_path, {}) == {
        DIR: str(tmp_path / CACHE_FOLDER), MIN_TIME: str(CACHE_MIN_COMPILE_TIME_SECS)}
    assert CACHE_MIN_COMPILE_TIME_SECS == 0.0
    assert compilation_cache_settings(tmp_path, {CACHE_SETTING: "1"})[DIR] == str(
        tmp_path / CACHE_FOLDER)


@pytest.mark.parametrize("off", ["0", "false", "OFF", " no "])
def test_bnstudy_jax_cache_0_sets_nothing(tmp_path, off):
    assert compilation_cache_settings(tmp_path, {CACHE_SETTING: off}) == {}
    # ... and leaves a cache the user configured for JAX alone (JAX reads it itself).
    assert compilation_cache_settings(tmp_path, {CACHE_SETTING: off, DIR: "/mine"}) == {}


def test_bnstudy_jax_cache_moves_it_and_a_relative_folder_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert compilation_cache_settings("/project", {CACHE_SETTING: "/elsewhere/cache"})[DIR] == (
        "/elsewhere/cache")
    assert compilation_cache_settings("/project", {CACHE_SETTING: "rel/cache"})[DIR] == str(
        tmp_path / "rel" / "cache")


def test_the_users_own_jax_settings_win(tmp_path):
    mine = {DIR: "/mine", MIN_TIME: "0.5", CACHE_SETTING: "/elsewhere"}
    assert compilation_cache_settings(tmp_path, mine) == {DIR: "/mine", MIN_TIME: "0.5"}


@pytest.mark.skipif(os.environ.get(CACHE_SETTING, "1").strip().lower() in ("0", "false", "no", "off"),
                    reason="the compilation cache is turned off for this test session")
def test_the_test_process_and_its_children_share_one_cache():
    # tests/conftest.py set it for this process and, through the environment, its children;
    # the hook of a Kedro session in a project copy finds the user's folder set and keeps it.
    folder = os.environ[DIR]
    assert jax.config.jax_compilation_cache_dir == folder
    assert jax.config.jax_persistent_cache_min_compile_time_secs == float(os.environ[MIN_TIME])
    assert compilation_cache_settings("/a/project/copy")[DIR] == folder
    # This process compiles through it: a program is loaded from it or written to it.
    events: list[str] = []

    def listener(event: str, **_) -> None:
        events.append(event)

    jax.monitoring.register_event_listener(listener)
    try:
        jax.jit(lambda x: x * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()
    finally:
        jax.monitoring.unregister_event_listener(listener)
    assert {HIT, WRITE} & set(events), events


def test_the_kedro_hook_switches_it_on_in_the_project(monkeypatch, tmp_path):
    projects = []
    monkeypatch.setattr(xla_hooks, "use_compilation_cache", projects.append)
    xla_hooks.XlaFlagsHooks().after_context_created(SimpleNamespace(project_path=tmp_path))
    assert projects == [tmp_path]


# A fresh process with the project's setting: compile and run a small program, report the
# cache events (jax.monitoring) and the result's bytes.
COMPILE_ONCE = textwrap.dedent("""
    import json, sys
    from bnstudy.core.backend import use_compilation_cache
    folder = use_compilation_cache(sys.argv[1])
    import jax, jax.numpy as jnp
    events = []
    jax.monitoring.register_event_listener(lambda event, **_: events.append(event))
    x = jnp.linspace(-3.0, 3.0, 48 * 48, dtype=jnp.float32).reshape(48, 48)
    y = jax.jit(lambda x: jnp.tanh(x @ x.T / 7.0).sum(axis=0) ** 3)(x)
    print(json.dumps({"folder": folder, "bytes": bytes(jax.device_get(y)).hex(),
                      "hits": events.count(%r), "writes": events.count(%r)}))
""") % (HIT, WRITE)


def _compile_once(project: Path) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))
           and key != CACHE_SETTING}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run([sys.executable, "-c", COMPILE_ONCE, str(project)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_first_ones_programs_and_computes_the_same(tmp_path):
    folder = tmp_path / CACHE_FOLDER

    first = _compile_once(tmp_path)
    entries = sorted(path.name for path in folder.glob("*-cache"))
    second = _compile_once(tmp_path)

    assert first["folder"] == second["folder"] == str(folder)
    assert first["writes"] >= 1 and first["hits"] == 0
    assert any(name.startswith("jit__lambda-") for name in entries), entries
    assert second["hits"] == first["writes"] and second["writes"] == 0
    assert sorted(path.name for path in folder.glob("*-cache")) == entries
    assert second["bytes"] == first["bytes"]
