"""bnstudy's CPU flags for XLA (bnstudy.core.backend): merged into XLA_FLAGS without overriding
the user's, and in effect in a Kedro session: convolutions compile without YNNPACK."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bnstudy.core.backend import CPU_XLA_FLAGS, use_cpu_flags, with_cpu_flags

FLAG = CPU_XLA_FLAGS[0]
NAME = FLAG.split("=")[0]


def test_the_flags_are_added_after_the_users_own():
    assert with_cpu_flags("") == " ".join(CPU_XLA_FLAGS)
    assert with_cpu_flags("--xla_backend_optimization_level=1") == (
        "--xla_backend_optimization_level=1 " + " ".join(CPU_XLA_FLAGS))


def test_a_flag_the_user_set_wins_and_nothing_is_added_twice():
    mine = f"{NAME}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
    assert with_cpu_flags(mine) == mine
    once = with_cpu_flags("")
    assert with_cpu_flags(once) == once


@pytest.mark.parametrize("opt_out", ["0", "false", "OFF"])
def test_opting_out_leaves_xla_flags_alone(opt_out):
    environ = {"XLA_FLAGS": "--xla_dump_to=/tmp/x", "BNSTUDY_XLA_CPU_FLAGS": opt_out}
    assert use_cpu_flags(environ) == "--xla_dump_to=/tmp/x"
    assert environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    environ = {}
    assert use_cpu_flags(environ) == environ["XLA_FLAGS"] == " ".join(CPU_XLA_FLAGS)


# A fresh process: open a Kedro session of this project (its hooks run), then compile the
# kernel gradient of a convolution and say whether XLA gave the convolution to YNNPACK.
SESSION_THEN_CONV = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    bootstrap_project(Path.cwd())
    with KedroSession.create(project_path=Path.cwd(), env="test") as session:
        session.load_context()
    import jax, jax.numpy as jnp
    x, k = jnp.ones((128, 32, 32, 8)), jnp.ones((3, 3, 8, 8))  # conv_1 of the cpu VGG
    f = lambda x, k: jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
    text = jax.jit(jax.grad(f, argnums=1)).lower(x, k).compile().as_text()
    print(os.environ.get("XLA_FLAGS", ""))
    print("__ynn_fusion" in text)
""")


def _session_then_conv(project: Path, **environ: str) -> tuple[str, bool]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("XLA_FLAGS", "BNSTUDY_XLA_CPU_FLAGS")}
    env.update(environ, JAX_PLATFORMS="cpu", KEDRO_DISABLE_TELEMETRY="1")
    done = subprocess.run([sys.executable, "-c", SESSION_THEN_CONV], env=env, cwd=project,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    flags, ynn = done.stdout.strip().splitlines()[-2:]
    return flags, ynn == "True"


def test_a_kedro_session_compiles_convolutions_without_ynnpack(project_copy):
    flags, ynn = _session_then_conv(project_copy)
    assert FLAG in flags.split()
    assert not ynn, "the session's XLA still hands convolutions to YNNPACK"
    # The control: without the flags, this jaxlib does hand them to YNNPACK, so the check
    # above can tell the two apart.
    flags, ynn = _session_then_conv(project_copy, BNSTUDY_XLA_CPU_FLAGS="0")
    assert flags == ""
    assert ynn, "without bnstudy's flags XLA no longer uses YNNPACK: revisit core/backend.py"
