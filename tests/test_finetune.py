"""Offline-to-online fine-tuning through the runner: a short Cal-QL run, a resume mid-online,
the refusals, and the compiled pieces (staged insert, mixed sampling) against NumPy."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cql_jax import finetune
from cql_jax import runner
from cql_jax import writers
from cql_jax.configs import base
from cql_jax.configs import cartpole
from cql_jax.configs import classic
from cql_jax.data import npz
from cql_jax.data import replay
from cql_jax.data.errors import DatasetError
from cql_jax.types import Transition

SEEDS = (0, 1)
TINY = {
    "agent.actor_hidden_sizes": (8,), "agent.critic_hidden_sizes": (8,),
    "agent.cql.num_samples": 2, "agent.cql.calibrated": True,
    "batch_size": 16, "steps_per_chunk": 20, "num_steps": 40, "eval_every": 40,
    "checkpoint_every": 40, "eval_episodes": 1,
    "online.steps_per_round": 100, "online.log_every": 100, "online.eval_every": 200,
    "online.checkpoint_every": 200, "online.buffer_capacity": 400, "selection.statistics": False, "log.tensorboard": False,
}


@pytest.fixture(scope="module")
def tiny_config(pendulum_minari_root):
  del pendulum_minari_root
  return base.override(classic.get_config("medium"), TINY)


def _rows(workdir):
  return writers.read_jsonl(workdir / writers.METRICS_FILE)


def test_offline_then_online_with_resume_mid_online(tiny_config, tmp_path):
  """40 offline steps, then 200 online environment steps (one Pendulum episode per member),
  checkpointed; a resume with online.steps=400 restores the buffers and runs one more
  episode. Every online row carries its environment step; buffers hold exactly the finished
  episodes' transitions; the gradient steps continue the offline count at UTD 1."""
  workdir = tmp_path / "run"
  first = base.override(tiny_config, {"online.steps": 200})
  runner.train_and_evaluate(first, workdir, SEEDS, progress=False)
  assert (workdir / finetune.CHECKPOINT_DIR / "200").is_dir()
  # A row the interrupted phase wrote after its last checkpoint goes on resume, though its
  # gradient step alone would not say so.
  with open(workdir / writers.METRICS_FILE, "a") as f:
    f.write(json.dumps({"step": 200, "kind": "train", "seeds": [0, 1],
                        "online/env_steps": 300}) + "\n")
  more = base.override(tiny_config, {"online.steps": 400, "online.buffer_capacity": 800})
  with pytest.raises(ValueError, match="buffer_capacity=400"):
    runner.train_and_evaluate(more, workdir, SEEDS, resume=True, progress=False)
  more = base.override(tiny_config, {"online.steps": 400})
  result = runner.train_and_evaluate(more, workdir, SEEDS, resume=True, progress=False)
  rows = _rows(workdir)
  train_online = [r for r in rows if r["kind"] == "train" and "online/env_steps" in r]
  assert [r["online/env_steps"] for r in train_online] == [100, 200, 300, 400]
  assert [r["step"] for r in train_online] == [140, 240, 340, 440]
  # Pendulum's episodes are 200 steps: a buffer fills at each episode's end, and the resumed
  # run starts from the restored one (200) rather than from empty.
  sizes = [r["online/buffer_size"] for r in train_online]
  assert sizes == [[0, 0], [200, 200], [200, 200], [400, 400]]
  evals = [r for r in rows if r["kind"] == "eval"]
  assert [(r["step"], r.get("online/env_steps")) for r in evals] == [
      (40, None), (40, 0), (240, 200), (440, 400)]
  assert result.results["final"]["online/env_steps"] == 400
  assert all("cql/bounded_fraction" in r for r in train_online[1:])
  assert all(np.isfinite(r["critic/loss"]).all() for r in train_online[1:])
  config_json = json.loads((workdir / "config.json").read_text())
  assert config_json["config"]["online"]["steps"] == 400


def test_online_from_scratch_without_offline_steps(tiny_config, tmp_path):
  """SAC from scratch through the same path: no offline steps, no offline share in the batch,
  random actions first and no update before them."""
  sac = base.override(tiny_config, {
      "num_steps": 0, "agent.cql.weight": 0.0, "agent.cql.calibrated": False,
      "online.offline_fraction": 0.0, "online.random_steps": 200, "online.steps": 300,
      "online.eval_every": 300, "online.checkpoint_every": 300})
  runner.train_and_evaluate(sac, tmp_path / "sac", (0,), progress=False)
  rows = [r for r in _rows(tmp_path / "sac") if r["kind"] == "train"]
  assert [r["step"] for r in rows] == [0, 0, 100]  # updates begin after the random steps.
  assert "cql/gap" not in rows[-1] and "critic/loss" in rows[-1]


def test_online_phase_is_refused_before_anything_is_written(tiny_config, tmp_path,
                                                            pendulum_minari_root):
  del pendulum_minari_root
  obs = np.zeros((11, 3), np.float32)
  path = tmp_path / "noenv.npz"
  npz.save_npz(path, obs, np.zeros((10, 1), np.float32), np.zeros(10, np.float32),
               np.zeros(10, bool), np.eye(1, 10, 9, dtype=bool)[0])
  noenv = base.override(tiny_config, {"online.steps": 200, "dataset_path": str(path)})
  with pytest.raises(DatasetError, match="records no environment"):
    runner.train_and_evaluate(noenv, tmp_path / "a", SEEDS, progress=False)
  other = base.override(noenv, {"env_id": "MountainCarContinuous-v0"})
  with pytest.raises(DatasetError, match="3-d observations"):
    runner.train_and_evaluate(other, tmp_path / "b", SEEDS, progress=False)
  discrete = base.override(cartpole.get_config("medium"), {"online.steps": 200,
                                                           "online.steps_per_round": 100})
  with pytest.raises(ValueError, match="continuous"):
    runner.train_and_evaluate(discrete, tmp_path / "c", SEEDS, progress=False)
  odd = base.override(tiny_config, {"online.steps": 150})
  with pytest.raises(ValueError, match="multiple of config.online.steps_per_round"):
    runner.train_and_evaluate(odd, tmp_path / "d", SEEDS, progress=False)
  for name in "abcd":
    assert not (tmp_path / name).exists()


def test_insert_first_writes_only_count_rows_and_wraps():
  buf = replay.empty_like(Transition(np.zeros(2, np.float32), np.zeros(1, np.float32),
                                     np.float32(0), np.float32(0), np.zeros(2, np.float32)), 5)
  insert = jax.jit(replay.insert_first)
  rows = lambda start: Transition(*(np.full((4, *s), start + np.arange(4).reshape(
      (4,) + (1,) * len(s)), np.float32) for s in [(2,), (1,), (), (), (2,)]))
  buf = insert(buf, rows(10), 3)                 # rows 10, 11, 12 into slots 0-2.
  buf = insert(buf, rows(20), 4)                 # 20..23 into slots 3, 4, 0, 1.
  want = np.array([22, 23, 12, 20, 21], np.float32)
  np.testing.assert_array_equal(np.asarray(buf.data.reward), want)
  assert int(buf.size) == 5 and int(buf.next_index) == 2
  buf = insert(buf, rows(30), 0)                 # nothing.
  np.testing.assert_array_equal(np.asarray(buf.data.reward), want)


@pytest.mark.parametrize("fraction,size,want_offline", [(0.5, 3, 8), (0.5, 0, 16), (0.0, 3, 0),
                                                        (1.0, 3, 16)])
def test_mixed_sample_takes_the_configured_share(fraction, size, want_offline):
  """Offline rows have reward 1, online rows reward 2: the batch holds round(B·fraction)
  offline rows, and all offline while the online buffer is empty."""
  data = Transition(*(jnp.full((50, *s), 1.0) for s in [(2,), (1,), (), (), (2,)]))
  buf = replay.empty_like(jax.tree.map(lambda x: x[0], data), 10)
  buf = replay.insert_first(buf, jax.tree.map(lambda x: 2.0 * x[:4], data), size)
  batch = jax.jit(finetune.make_mixed_sample(16, fraction))((data, buf), jax.random.key(0))
  reward = np.asarray(batch.reward)
  assert reward.shape == (16,) and int(np.sum(reward == 1.0)) == want_offline
