"""Sweep specs, their checks against a config, members, memory estimate, layouts and tables.

Everything here works on shapes and configs; nothing trains (tests/test_sweep_runner.py trains).
"""
import itertools

import jax
import numpy as np
import pytest

from cql_jax import parallel
from cql_jax import sweep
from cql_jax.configs import base
from cql_jax.configs import cartpole
from cql_jax.configs import classic
from cql_jax.continuous import agent as cql
from cql_jax.types import Transition


@pytest.fixture(scope="module")
def config():
  return classic.get_config("medium")


# --------------------------------------------------------------------------- the grid


def test_axis_parsing_reads_python_literals():
  assert sweep.parse_axis("agent.cql.weight=1,5,10") == ("agent.cql.weight", (1, 5, 10))
  assert sweep.parse_axis("agent.critic_lr=3e-4, 1e-3") == ("agent.critic_lr", (3e-4, 1e-3))
  key, values = sweep.parse_axis("agent.critic_hidden_sizes=(64,64),(256,256)")
  assert key == "agent.critic_hidden_sizes" and values == ((64, 64), (256, 256))
  assert sweep.parse_axis("agent.cql.variant=H,rho")[1] == ("H", "rho")
  for bad in ("agent.cql.weight", "agent.cql.weight=", "=1,2", "agent.cql.weight=1,,2"):
    with pytest.raises(sweep.SweepError):
      sweep.parse_axis(bad)


def test_grid_is_a_product_with_the_zipped_axis_innermost():
  grid = sweep.Grid.from_flags(
      ["agent.cql.weight=1,5"], ["agent.critic_lr=1e-4,1e-3", "agent.actor_lr=2e-4,2e-3"])
  expected = [{"agent.cql.weight": w, "agent.critic_lr": c, "agent.actor_lr": a}
              for w in (1, 5) for c, a in ((1e-4, 2e-4), (1e-3, 2e-3))]
  assert grid.settings() == expected
  assert sweep.Grid.from_flags([], []) is None
  two = sweep.Grid.from_dict({"agent.cql.weight": [1, 5], "agent.gamma": [0.9, 0.99, 0.999]})
  assert two.settings() == [dict(zip(("agent.cql.weight", "agent.gamma"), p))
                            for p in itertools.product([1, 5], [0.9, 0.99, 0.999])]


@pytest.mark.parametrize("grid, match", [
    (sweep.Grid(), "no axes"),
    (sweep.Grid.from_dict({"agent.cql.weight": []}), "has no values"),
    (sweep.Grid.from_dict({"agent.cql.weight": [1, 1]}), "repeats a value"),
    (sweep.Grid.from_dict({"agent.cql.weight": [1]}, {"agent.cql.weight": [2]}), "more than once"),
    (sweep.Grid.from_dict(None, {"agent.cql.weight": [1, 2], "agent.critic_lr": [1e-3]}),
     "equal lengths"),
])
def test_malformed_grids_are_refused(grid, match):
  with pytest.raises(sweep.SweepError, match=match):
    grid.settings()


# --------------------------------------------------------------------------- checks against a config


def test_unknown_key_suggests_and_lists_sweepable_keys(config):
  with pytest.raises(sweep.SweepError) as error:
    sweep.plan(config, {"agent.cql.wieght": [1, 5]}, [0])
  message = str(error.value)
  assert "unknown sweep key 'agent.cql.wieght'" in message
  assert "Did you mean 'agent.cql.weight'" in message
  assert "agent.critic_lr" in message and "agent.gamma" in message


@pytest.mark.parametrize("key, values, reason", [
    ("agent.critic_hidden_sizes", [(16, 16), (32, 32)], "shapes"),
    ("agent.num_critics", [2, 4], "ensemble"),
    ("agent.cql.variant", ["H", "rho"], "soft-maximum"),
    ("agent.cql.lagrange", [False, True], "dual step"),
    ("batch_size", [64, 256], "setting of the run"),
])
def test_non_sweepable_keys_are_refused_with_the_reason(config, key, values, reason):
  with pytest.raises(sweep.SweepError) as error:
    sweep.plan(config, {key: values}, [0])
  message = str(error.value)
  assert f"'{key}'" in message and reason in message
  assert f"--config.{key}=" in message and "Sweepable keys" in message


@pytest.mark.parametrize("values, match", [
    (["abc", 5.0], "not a finite number"), ([True, 5.0], "not a finite number"),
    ([float("nan")], "not a finite number")])
def test_wrong_value_types_are_refused(config, values, match):
  with pytest.raises(sweep.SweepError, match=match):
    sweep.plan(config, {"agent.cql.weight": values}, [0])


def test_values_take_the_config_type_and_members_are_setting_major(config):
  plan = sweep.plan(config, {"agent.cql.weight": [1, 5]}, [3, 4])
  assert plan.settings == ({"agent.cql.weight": 1.0}, {"agent.cql.weight": 5.0})
  assert all(isinstance(s["agent.cql.weight"], float) for s in plan.settings)
  assert [(m.setting["agent.cql.weight"], m.seed) for m in plan.members] == [
      (1.0, 3), (1.0, 4), (5.0, 3), (5.0, 4)]
  assert plan.members[1].name == "cql.weight=1,seed_4"
  assert plan.members[1].label == "cql.weight=1, seed 4"
  hparams = plan.hparams()
  assert list(hparams) == ["cql.weight"] and hparams["cql.weight"].dtype == np.float32
  np.testing.assert_array_equal(hparams["cql.weight"], [1.0, 1.0, 5.0, 5.0])
  plain = sweep.plan(config, None, [0, 1])
  assert plain.hparams() is None and plain.to_json() is None
  assert [m.seed for m in plain.members] == [0, 1] and plain.members[0].label == "seed 0"


def test_integer_hyperparameters_stay_integers():
  config = cartpole.get_config("medium")
  key = "agent.target_update_period"
  plan = sweep.plan(config, {key: [100, 200]}, [0])
  assert plan.hparams()["target_update_period"].dtype == np.int32
  with pytest.raises(sweep.SweepError, match="not an integer"):
    sweep.plan(config, {key: [100.5]}, [0])


def test_penalty_is_compiled_in_whenever_a_member_needs_it(config):
  with_zero = sweep.plan(config, {"agent.cql.weight": [0.0, 5.0]}, [0])
  assert with_zero.program_config(config).agent.cql.weight == 5.0
  sac = base.override(config, {"agent.cql.weight": 0.0})
  assert sweep.plan(sac, {"agent.cql.weight": [0.0, 3.0]}, [0]).program_config(
      sac).agent.cql.weight == 3.0
  # Every member at zero: compiled out, as offline SAC alone would be, and not in the state.
  zeros = sweep.plan(config, {"agent.cql.weight": [0.0], "agent.gamma": [0.9, 0.99]}, [0])
  assert zeros.program_config(config).agent.cql.weight == 0.0
  assert list(zeros.hparams()) == ["gamma"]
  untouched = sweep.plan(config, {"agent.critic_lr": [1e-4, 1e-3]}, [0])
  assert untouched.program_config(config) is config


def test_resume_difference_names_the_changed_axis(config):
  old = sweep.plan(config, {"agent.cql.weight": [1, 5]}, [0]).to_json()
  new = sweep.plan(config, {"agent.cql.weight": [1, 10]}, [0]).to_json()
  assert sweep.resume_difference(old, old) is None
  assert sweep.resume_difference(old, new) == "--sweep agent.cql.weight: [1, 5] -> [1, 10]"
  assert "is not a sweep" in sweep.resume_difference(None, new)
  assert "was a sweep" in sweep.resume_difference(old, None)


# --------------------------------------------------------------------------- memory


def _tiny_agent(hidden=(16, 16), num_samples=3):
  c = cql.default_config()
  c.actor_hidden_sizes = c.critic_hidden_sizes = hidden
  c.cql.num_samples = num_samples
  return cql.make_cql_agent(c, 3, [-1.0], [1.0])


def _data(n=100):
  rng = np.random.default_rng(0)
  f = lambda *s: rng.normal(size=s).astype(np.float32)
  return Transition(f(n, 3), np.tanh(f(n, 1)), f(n), np.ones(n, np.float32), f(n, 3))


def test_memory_estimate_counts_state_data_and_activations():
  agent, data = _tiny_agent(), _data()
  estimate = sweep.estimate_memory(agent, data, batch_size=32, steps_per_chunk=10)
  state = jax.jit(agent.init)(jax.random.key(0))
  assert estimate.state == sum(np.asarray(x).nbytes for x in jax.tree.leaves(state))
  assert estimate.dataset == sum(x.nbytes for x in data)
  # At least the first critic layer's output on [E=2, B=32, 1 + 3N = 10 actions, 16 units]
  # forward, and its gradient backward.
  assert estimate.activations >= 2 * (2 * 32 * 10 * 16 * 4)
  _, metrics = jax.eval_shape(agent.update, state, jax.tree.map(lambda x: x[:32], data),
                              jax.random.key(1))
  assert estimate.metrics == 10 * sum(4 * int(np.prod(v.shape)) for v in metrics.values())


def test_the_activation_estimate_is_close_to_xlas_own_buffer_size():
  """XLA's memory analysis of one compiled update is the independent measure."""
  agent, data = _tiny_agent((32, 32), 10), _data(1000)
  estimate = sweep.estimate_memory(agent, data, batch_size=64, steps_per_chunk=1)
  from cql_jax.data import buffer

  def step(state, d, key):
    batch_key, update_key = jax.random.split(key)
    return agent.update(state, buffer.sample_batch(d, batch_key, 64), update_key)
  state = jax.eval_shape(agent.init, jax.random.key(0))
  compiled = jax.jit(step).lower(state, data, jax.random.key(0)).compile()
  xla = compiled.memory_analysis().temp_size_in_bytes
  assert 0.5 * xla <= estimate.activations <= 2.0 * xla, (estimate.activations, xla)
  assert estimate.activations * sweep.ACTIVATION_MARGIN >= xla


def test_members_that_do_not_fit_are_refused_with_how_many_would():
  estimate = sweep.MemoryEstimate(dataset=1000, state=100, activations=800, metrics=50)
  per_member = 2 * 100 + 800 * sweep.ACTIVATION_MARGIN + 50
  sweep.check_memory(estimate, 10, limit_bytes=1000 + 10 * per_member)
  with pytest.raises(sweep.SweepError) as error:
    sweep.check_memory(estimate, 11, limit_bytes=1000 + 10 * per_member)
  assert "11 members do not fit" in str(error.value) and "About 10 members fit" in str(error.value)
  # Four member shards: each device holds a quarter of the members.
  sweep.check_memory(estimate, 40, member_shards=4, limit_bytes=1000 + 10 * per_member)
  # Two data shards halve each member's activations: 2·100 + 400·margin + 50 per member.
  half = 2 * 100 + 400 * sweep.ACTIVATION_MARGIN + 50
  fit = int(10 * per_member // half)
  sweep.check_memory(estimate, fit, data_shards=2, limit_bytes=1000 + 10 * per_member)
  with pytest.raises(sweep.SweepError, match=f"About {fit} members fit"):
    sweep.check_memory(estimate, fit + 1, data_shards=2, limit_bytes=1000 + 10 * per_member)


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("spec, members, devices, expected", [
    ("auto", 8, 8, parallel.Layout(8, 1)),
    ("auto", 2, 8, parallel.Layout(2, 4)),
    ("auto", 6, 8, parallel.Layout(2, 4)),
    ("auto", 64, 8, parallel.Layout(8, 1)),
    ("auto", 5, 1, None),
    ("single", 8, 8, None),
    ("4x2", 8, 8, parallel.Layout(4, 2)),
    ("2x1", 4, 8, parallel.Layout(2, 1)),
])
def test_layouts(spec, members, devices, expected):
  assert parallel.choose_layout(spec, members, 256, devices) == expected


@pytest.mark.parametrize("spec, members, batch, match", [
    ("3x3", 9, 256, "needs 9 devices"), ("4x1", 6, 256, "do not split"),
    ("1x8", 1, 100, "does not split"), ("auto", 1, 100, "does not divide"),
    ("fast", 1, 256, "not a layout")])
def test_bad_layouts_say_what_to_change(spec, members, batch, match):
  with pytest.raises(ValueError, match=match):
    parallel.choose_layout(spec, members, batch, 8)


# --------------------------------------------------------------------------- results


def test_summary_table_per_setting(config):
  plan = sweep.plan(config, {"agent.cql.weight": [1, 5]}, [0, 1, 2, 3])
  scores = [10.0, 20.0, 30.0, 100.0, 1.0, 2.0, 3.0, 4.0]
  rows = sweep.summary(plan, {"eval/normalized_score": scores, "eval/return": [0.0] * 8})
  assert [r["setting"] for r in rows] == [{"agent.cql.weight": 1.0}, {"agent.cql.weight": 5.0}]
  first = rows[0]
  assert first["metric"] == "eval/normalized_score" and first["scores"] == scores[:4]
  assert first["mean"] == pytest.approx(40.0)
  assert first["std"] == pytest.approx(np.sqrt(((np.array(scores[:4]) - 40.0) ** 2).mean()))
  # Of 4 sorted scores the middle half is the 2nd and 3rd.
  assert first["iqm"] == pytest.approx((20.0 + 30.0) / 2)
  assert rows[1]["iqm"] == pytest.approx(2.5)
  table = sweep.format_table(rows)
  assert "| agent.cql.weight | normalized_score mean ± std | IQM | seeds |" in table
  assert "| 1 | 40.0 ± 35.4 | 25.0 | 4 |" in table
