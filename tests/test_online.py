"""Tests of the device ring buffer and online SAC (cql_jax.data.replay, cql_jax.makers.online)."""

import jax
import numpy as np
import pytest

from cql_jax.makers import online
from cql_jax.data import replay
from cql_jax.types import Transition

OBS_DIM, ACTION_DIM = 3, 2


def _transitions(start: int, count: int) -> Transition:
  """`count` transitions whose every field encodes its global index start..start+count-1."""
  ids = np.arange(start, start + count, dtype=np.float32)
  return Transition(obs=np.repeat(ids[:, None], OBS_DIM, 1),
                    action=np.repeat(ids[:, None], ACTION_DIM, 1) * 0.5,
                    reward=ids * 2.0, discount=(ids % 2).astype(np.float32),
                    next_obs=np.repeat(ids[:, None], OBS_DIM, 1) + 1.0)


class NumpyRing:
  """Reference ring buffer written with a Python loop, one slot at a time."""

  def __init__(self, capacity):
    self.capacity = capacity
    self.rows = [None] * capacity
    self.next_index = 0
    self.size = 0

  def insert(self, transitions: Transition):
    for k in range(transitions.reward.shape[0]):
      self.rows[self.next_index] = jax.tree.map(lambda x: np.asarray(x[k]), transitions)
      self.next_index = (self.next_index + 1) % self.capacity
      self.size = min(self.size + 1, self.capacity)


@pytest.mark.parametrize("chunks", [[3, 4, 5, 7, 1], [7, 7, 7], [1] * 9])
def test_ring_buffer_matches_numpy_with_wraparound(chunks):
  capacity = 7
  buf = replay.make_replay_buffer(capacity, OBS_DIM, ACTION_DIM)
  ref = NumpyRing(capacity)
  insert = jax.jit(replay.insert)
  start = 0
  for count in chunks:
    batch = _transitions(start, count)
    buf = insert(buf, batch)
    ref.insert(batch)
    start += count
    assert int(buf.next_index) == ref.next_index
    assert int(buf.size) == ref.size
    for slot in range(ref.size):
      for got, want in zip(jax.tree.map(lambda x: np.asarray(x[slot]), buf.data), ref.rows[slot]):
        np.testing.assert_array_equal(got, want)


def test_sample_only_draws_filled_slots():
  capacity = 16
  buf = replay.insert(replay.make_replay_buffer(capacity, OBS_DIM, ACTION_DIM),
                      _transitions(100, 5))
  batch = jax.jit(replay.sample, static_argnums=2)(buf, jax.random.key(0), 4096)
  drawn = np.asarray(batch.reward) / 2.0
  # Empty slots are zeros; drawing one would show up as index 0.
  assert set(np.unique(drawn).tolist()) == {100.0, 101.0, 102.0, 103.0, 104.0}
  np.testing.assert_array_equal(np.asarray(batch.obs)[:, 0], drawn)
  np.testing.assert_array_equal(np.asarray(batch.next_obs)[:, 0], drawn + 1.0)


def test_sample_after_wraparound_sees_only_newest():
  capacity = 4
  buf = replay.make_replay_buffer(capacity, OBS_DIM, ACTION_DIM)
  buf = replay.insert(buf, _transitions(0, 3))
  buf = replay.insert(buf, _transitions(3, 3))   # overwrites slots 0 and 1 (ids 0, 1).
  drawn = np.asarray(replay.sample(buf, jax.random.key(1), 2048).reward) / 2.0
  assert set(np.unique(drawn).tolist()) == {2.0, 3.0, 4.0, 5.0}


def test_insert_more_than_capacity_raises():
  buf = replay.make_replay_buffer(3, OBS_DIM, ACTION_DIM)
  with pytest.raises(ValueError, match="capacity"):
    replay.insert(buf, _transitions(0, 4))


def _warmup_only(env_id, steps, steps_per_round):
  c = online.default_config()
  c.actor_hidden_sizes = c.critic_hidden_sizes = (8,)
  c.total_steps = c.warmup_steps = steps
  c.steps_per_round = steps_per_round
  c.buffer_capacity = steps
  c.eval_every = steps
  c.eval_episodes = 1
  return online.train_online(env_id, c, seed=3, record_episodes=True)


def test_truncation_bootstraps_and_stores_final_obs():
  # Pendulum only truncates (200 steps): every discount is 1, and the last transition of an
  # episode must carry that episode's final observation, not the autoreset one.
  result = _warmup_only("Pendulum-v1", 400, 50)
  data = jax.tree.map(np.asarray, result.buffer.data)
  np.testing.assert_array_equal(data.discount, 1.0)
  assert len(result.episodes) == 2 and all(ep.truncations[-1] for ep in result.episodes)
  np.testing.assert_array_equal(data.next_obs[199], result.episodes[0].observations[-1])
  np.testing.assert_array_equal(data.obs[200], result.episodes[1].observations[0])
  assert not np.allclose(data.next_obs[199], data.obs[200])
  np.testing.assert_array_equal(data.next_obs[:199], data.obs[1:200])


def test_termination_zeroes_discount():
  # Random Hopper episodes fall over (terminate) within a few dozen steps.
  result = _warmup_only("Hopper-v5", 300, 100)
  data = jax.tree.map(np.asarray, result.buffer.data)
  ends = np.cumsum([len(ep.rewards) for ep in result.episodes]) - 1
  terminated = [ep.terminations[-1] for ep in result.episodes]
  assert any(terminated)
  expected = np.ones(300, np.float32)
  expected[ends[np.asarray(terminated)]] = 0.0
  np.testing.assert_array_equal(data.discount, expected)
  np.testing.assert_array_equal(data.next_obs[ends[0]], result.episodes[0].observations[-1])


@pytest.mark.slow
def test_sac_learns_pendulum():
  # Budget: 12k env steps (1k random warm-up), 64x64 nets, batch 128, UTD 1. A random policy
  # scores about -1200 to -1500, an expert about -150. The loop's speed is measured by
  # benchmarks/online_loop.py, not here: a wall-clock bound fails on a loaded machine.
  c = online.default_config()
  c.actor_hidden_sizes = c.critic_hidden_sizes = (64, 64)
  c.total_steps, c.warmup_steps = 12_000, 1_000
  c.steps_per_round, c.batch_size, c.buffer_capacity = 50, 128, 20_000
  c.eval_every, c.eval_episodes = 1_000, 10
  result = online.train_online("Pendulum-v1", c, seed=0)
  assert result.env_steps == 12_000
  final = np.mean([e["mean_return"] for e in result.evals[-2:]])
  assert result.evals[0]["mean_return"] < -900, result.evals[0]    # random start, for contrast.
  assert final > -400, [e["mean_return"] for e in result.evals]


def test_pick_snapshots_takes_first_third_of_the_way_from_random_to_expert():
  from cql_jax.makers import mujoco_datasets
  # (step, deterministic evaluation, sampled-action return)
  rows = [(10, -11.0, -55.0), (20, -10.0, -35.0), (30, -9.0, -28.0), (40, -6.0, -8.0),
          (50, -7.0, -9.0)]
  snaps = [{"step": s, "mean_return": d, "sampled": r, "actor_params": None} for s, d, r in rows]
  asked = []
  sampled = lambda snap: asked.append(snap["step"]) or snap["sampled"]
  medium, expert = mujoco_datasets.pick_snapshots(snaps, random_return=-42.0,
                                                  sampled_return=sampled, learning_from=10)
  assert expert["step"] == 40                      # the best deterministic evaluation.
  # Level −42 + (−8 + 42)/3 = −30.67: step 10 is the warm-up's, −35 < level <= −28.
  assert medium["step"] == 30 and medium["sampled_return"] == -28.0
  assert asked == [40, 20, 30]                     # the expert, then up to the medium one.
  # Positive returns: 900 < 0 + 3000/3 <= 1200.
  snaps = [{"step": s, "mean_return": r, "actor_params": None}
           for s, r in [(10, 50.0), (20, 900.0), (30, 1200.0), (40, 3000.0)]]
  medium, _ = mujoco_datasets.pick_snapshots(snaps, 0.0, lambda s: s["mean_return"])
  assert medium["step"] == 30
  with pytest.raises(ValueError, match="train longer"):   # an expert no better than random.
    mujoco_datasets.pick_snapshots(snaps, 5000.0, lambda s: s["mean_return"])


def test_training_episodes_keep_those_ended_by_step():
  from cql_jax.makers import mujoco_datasets
  def episode(length, end_step):
    return online.Episode(observations=np.zeros((length + 1, 2), np.float32),
                          actions=np.zeros((length, 1), np.float32), rewards=np.ones(length),
                          terminations=np.zeros(length, bool),
                          truncations=np.eye(1, length, length - 1, dtype=bool)[0],
                          end_step=end_step)
  kept = mujoco_datasets.training_episodes([episode(3, 3), episode(4, 7), episode(5, 12)], 7)
  assert [len(ep.rewards) for ep in kept] == [3, 4]
  assert [ep.id for ep in kept] == [0, 1]


def test_dataset_id_validates():
  from cql_jax.makers import mujoco_datasets
  assert mujoco_datasets.dataset_id("hopper", "medium-replay") == "cql_jax/hopper/medium-replay-v0"
  with pytest.raises(ValueError):
    mujoco_datasets.dataset_id("ant", "medium")
