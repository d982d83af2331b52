"""Data parallelism on 4 fake CPU devices matches one device (run in a subprocess so that
--xla_force_host_platform_device_count applies before JAX initialises)."""
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
  import jax
  import numpy as np
  from cql_jax import parallel, train
  from cql_jax.continuous import agent as cql
  from cql_jax.discrete import agent as discrete
  from cql_jax.types import Transition

  assert jax.device_count() == 4, jax.devices()

  def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  def compare(agent, data, batch, steps, num_seeds, member_shards):
    if num_seeds is None:
      init_key, key = jax.random.key(0), jax.random.key(7)
    else:
      init_key, loop_keys = train.seed_keys(range(num_seeds))
      key = train.chunk_keys(loop_keys, 0)
    ref = train.init_states(agent, init_key, num_seeds)
    ref, ref_metrics = train.compile_chunk(agent, batch, steps, num_seeds)(ref, data, key)
    mesh = parallel.make_mesh(member_shards)
    state = train.init_states(agent, init_key, num_seeds)
    state = (parallel.replicate(state, mesh) if num_seeds is None
             else parallel.shard_members(state, mesh))
    chunk = parallel.compile_data_parallel_chunk(agent, batch, steps, mesh, num_seeds)
    data_rep = parallel.replicate(data, mesh)
    key_rep = (parallel.replicate(key, mesh) if num_seeds is None
               else parallel.shard_members(key, mesh))
    compiled = chunk.lower(state, data_rep, key_rep).compile()
    assert "all-reduce" in compiled.as_text(), "gradients are not reduced across devices"
    state, metrics = compiled(state, data_rep, key_rep)
    return max_diff(ref, state), max_diff(ref_metrics["critic/loss"], metrics["critic/loss"])

  rng = np.random.default_rng(0)
  n = 400
  cont = Transition(rng.normal(size=(n, 5)).astype(np.float32),
                    rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                    rng.normal(size=n).astype(np.float32), np.ones(n, np.float32),
                    rng.normal(size=(n, 5)).astype(np.float32))
  config = cql.default_config()
  config.actor_hidden_sizes = config.critic_hidden_sizes = (32, 32)
  config.cql.num_samples = 3
  agent = cql.make_cql_agent(config, 5, -np.ones(2), np.ones(2))
  print("continuous", *compare(agent, cont, 16, 4, None, 1))
  print("continuous_seeds", *compare(agent, cont, 16, 4, 2, 2))

  disc = cont._replace(action=rng.integers(0, 3, n).astype(np.int32))
  dconfig = discrete.default_config()
  dconfig.torso, dconfig.hidden_sizes, dconfig.num_quantiles = "mlp", (32, 32), 8
  dagent = discrete.make_discrete_agent(dconfig, (5,), 3)
  print("discrete", *compare(dagent, disc, 16, 4, None, 1))
""")


def test_data_parallel_matches_single_device():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(_ROOT),
             XLA_FLAGS=xla_flags.fast_compile(
                 f"--xla_force_host_platform_device_count=4 {SLOW_CPU_COLLECTIVES}"))
  out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                       timeout=900, check=False)
  assert out.returncode == 0, out.stderr[-4000:]
  lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
  assert set(lines) == {"continuous", "continuous_seeds", "discrete"}, out.stdout
  for name, diffs in lines.items():
    param_diff, loss_diff = map(float, diffs.split())
    assert param_diff < 1e-5, (name, param_diff)
    assert loss_diff < 1e-4, (name, loss_diff)


def test_bad_batch_split_raises():
  import jax
  from cql_jax import parallel
  mesh = parallel.make_mesh(1, jax.devices()[:1])
  with pytest.raises(ValueError):
    parallel.make_mesh(2, jax.devices()[:1])
  assert mesh.shape == {"member": 1, "data": 1}


def test_no_distributed_init_without_environment(monkeypatch):
  from cql_jax import parallel
  for name in ("CQL_JAX_COORDINATOR", "CQL_JAX_DISTRIBUTED", "CQL_JAX_NUM_PROCESSES",
               "CQL_JAX_PROCESS_ID"):
    monkeypatch.delenv(name, raising=False)
  assert parallel.maybe_initialize_distributed() is False
