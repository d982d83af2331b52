"""A 4-setting × 2-seed sweep on an 8-device Mesh (simulated CPU devices): one compiled chunk,
and every member follows the same setting trained alone on one device, for the continuous
(Pendulum) and the discrete (CartPole) agent. Each family runs in its own subprocess so that
--xla_force_host_platform_device_count applies before JAX initialises.
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from tests import xla_flags

# Simulated devices are threads: on a loaded 2-core machine one can reach a collective long
# after the others, past XLA's default rendezvous timeout (seen: "only 7 of them arrived on
# time"), so the test allows minutes.
SLOW_CPU_COLLECTIVES = ("--xla_cpu_collective_timeout_seconds=900 "
                        "--xla_cpu_collective_call_terminate_timeout_seconds=900")

_ROOT = pathlib.Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent("""
  import json, sys, tempfile
  import jax
  import numpy as np
  from cql_jax import parallel, runner, sweep
  from cql_jax.configs import base, cartpole, classic
  from cql_jax.makers import cartpole as cartpole_data, pendulum

  family, root = sys.argv[1], sys.argv[2]
  assert jax.device_count() == 8, jax.devices()
  if family == "continuous":
    pendulum.ensure_pendulum_datasets(kinds=("medium",), num_episodes=4, ref_episodes=4)
    config = base.override(classic.get_config("medium"), {
        "agent.actor_hidden_sizes": (16, 16), "agent.critic_hidden_sizes": (16, 16),
        "agent.cql.num_samples": 4, "batch_size": 32})
    grid = {"agent.cql.weight": [1.0, 5.0], "agent.critic_lr": [3e-4, 1e-3]}
  else:
    cartpole_data.ensure_cartpole_datasets(["medium"], num_episodes=4, ref_episodes=4)
    config = base.override(cartpole.get_config("medium"), {
        "agent.hidden_sizes": (16, 16), "batch_size": 32, "agent.target_update_period": 10})
    grid = {"agent.cql.weight": [0.5, 2.0], "agent.lr": [1e-3, 3e-3]}
  config = base.override(config, {"num_steps": 40, "steps_per_chunk": 20, "eval_every": 40,
                                  "checkpoint_every": 40, "eval_episodes": 2})

  # Count the chunk programs the sweep builds, and how often each one is traced.
  chunks, original = [], parallel.compile_data_parallel_chunk
  def counting(*args, **kwargs):
    chunks.append(original(*args, **kwargs))
    return chunks[-1]
  parallel.compile_data_parallel_chunk = counting

  swept = runner.train_and_evaluate(config, tempfile.mkdtemp(dir=root), [0, 1], grid=grid,
                                    progress=False)
  mesh_shape = {k: int(v) for k, v in jax.tree.leaves(swept.state)[0].sharding.mesh.shape.items()}
  plan = sweep.plan(config, sweep.Grid.from_dict(grid), [0, 1])

  def max_diff(member_state, alone_state):
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(jax.tree.leaves(member_state), jax.tree.leaves(alone_state)))

  # One copy to the host: indexing a member-sharded array on the devices launches a small
  # 8-device program with a collective per leaf and member, and on a loaded 2-core machine a
  # run of them once left one simulated device short of a rendezvous for 15 minutes.
  swept_state = parallel.to_host(swept.state)
  diffs, score_diffs = [], []
  single = base.override(config, {"layout": "single"})
  for i, setting in enumerate(plan.settings):
    alone = runner.train_and_evaluate(base.override(single, setting), tempfile.mkdtemp(dir=root),
                                      [0, 1], progress=False)
    for s in range(2):
      member = jax.tree.map(lambda x: x[2 * i + s], swept_state)
      diffs.append(max_diff(member, jax.tree.map(lambda x: x[s], alone.state)))
    score_diffs.append(float(np.max(np.abs(
        np.asarray(swept.results["final"]["eval/return"][2 * i:2 * i + 2])
        - np.asarray(alone.results["final"]["eval/return"])))))
  print(json.dumps({"chunks": len(chunks), "traces": [c._cache_size() for c in chunks],
                    "mesh": mesh_shape, "param_diffs": diffs, "return_diffs": score_diffs}))
""")


@pytest.mark.parametrize("family", ["continuous", "discrete"])
def test_sweep_on_eight_devices_compiles_once_and_matches_members_alone(family, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(_ROOT),
             MINARI_DATASETS_PATH=str(tmp_path / "minari"),
             XLA_FLAGS=xla_flags.fast_compile(
                 f"--xla_force_host_platform_device_count=8 {SLOW_CPU_COLLECTIVES}"),
             JAX_COMPILATION_CACHE_DIR=str(_ROOT / ".jax_cache"))
  out = subprocess.run([sys.executable, "-c", _SCRIPT, family, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=1800, check=False)
  assert out.returncode == 0, out.stderr[-4000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["chunks"] == 1 and result["traces"] == [1], result
  assert result["mesh"] == {"member": 8, "data": 1}, result
  assert len(result["param_diffs"]) == 8
  assert max(result["param_diffs"]) < 1e-5, result
  assert max(result["return_diffs"]) < 1e-3, result
