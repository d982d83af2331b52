"""The peer harness's main-interpreter side (experiments/peer.py): what it exports for d3rlpy and
the run directory it writes for experiments.plot. d3rlpy itself runs only in .peer-venv."""
import json

import numpy as np
import pytest

from cql_jax import OfflineDataset
from experiments import peer
from experiments import plot


def _two_episodes():
  """Episode 0: 3 steps, terminated. Episode 1: 2 steps, cut by the time limit."""
  obs = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)   # episode layout: 4 + 3 observations.
  actions = np.array([[0.5], [-1.5], [2.0], [1.0], [-0.25]], np.float32)
  rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
  terminals = np.array([0, 0, 1, 0, 0], bool)
  truncations = np.array([0, 0, 0, 0, 1], bool)
  return obs, OfflineDataset.from_arrays(
      obs, actions, rewards, terminals, truncations, env_id="Pendulum-v1", ref_min_score=-10.0,
      ref_max_score=30.0)


def _exported_and_run_dir(tmp_path, algo):
  """(the export of _two_episodes, an empty run directory with its seeds/ folder)."""
  _, dataset = _two_episodes()
  data_file = tmp_path / "d.npz"
  peer.export(dataset, data_file)
  run_dir = tmp_path / algo
  (run_dir / "seeds").mkdir(parents=True)
  return data_file, run_dir


def test_export_keeps_every_transition_and_marks_each_episode_end(tmp_path):
  obs, dataset = _two_episodes()
  info = peer.export(dataset, tmp_path / "d.npz")
  with np.load(tmp_path / "d.npz") as f:
    data = dict(f)
  assert info["transitions"] == 5 and info["episodes"] == 2 and not info["discrete"]
  # Transitions: observation rows 0-2 then 4-5, each followed by the next row.
  np.testing.assert_array_equal(data["observations"], obs[[0, 1, 2, 4, 5]])
  np.testing.assert_array_equal(data["next_observations"], obs[[1, 2, 3, 5, 6]])
  np.testing.assert_array_equal(data["actions"], [[0.5], [-1.5], [2.0], [1.0], [-0.25]])
  np.testing.assert_array_equal(data["terminals"], [0, 0, 1, 0, 0])
  np.testing.assert_array_equal(data["truncations"], [0, 0, 0, 0, 1])
  assert str(data["env_id"]) == "Pendulum-v1"
  assert (float(data["ref_min_score"]), float(data["ref_max_score"])) == (-10.0, 30.0)
  np.testing.assert_array_equal(data["action_low"], [-2.0])   # Pendulum's torque bounds.


def test_seed_files_become_a_run_that_plot_reads(tmp_path, monkeypatch):
  data_file, run_dir = _exported_and_run_dir(tmp_path, "bc")
  settings = {"config": {"dataset_id": "cql_jax/x/medium-v0"}, "seeds": [3, 7],
              "peer": {"algo": "bc", "steps": 4, "eval_every": 2, "eval_episodes": 1,
                       "eval_seed": 0, "hidden": "8", "overrides": {}}}
  # Both seeds already finished (a rerun skips them): no peer interpreter is started.
  scores = {3: [10.0, 20.0], 7: [30.0, 50.0]}
  for seed, values in scores.items():
    lines = [{"config": {}}] + [{"step": 2 * (i + 1), "return": -v, "normalized_score": v,
                                 "seconds": 1.0} for i, v in enumerate(values)] + [{"done": True}]
    (run_dir / "seeds" / f"seed_{seed}.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines))
  monkeypatch.setattr(peer.subprocess, "run", None)   # any launch would fail loudly.
  results = peer.run_algo("bc", settings, data_file, run_dir, python="unused", log=lambda m: None)
  assert results["final"]["eval/normalized_score"] == [20.0, 50.0]
  assert results["final_mean"]["eval/normalized_score"] == 35.0
  steps, values = plot.learning_curve(run_dir)
  np.testing.assert_array_equal(steps, [2, 4])
  np.testing.assert_array_equal(values, [[10.0, 30.0], [20.0, 50.0]])
  assert plot.dataset_name(run_dir) == "cql_jax/x/medium-v0"


def test_online_seed_files_become_a_curve_over_environment_steps(tmp_path, monkeypatch):
  from experiments import online_finetune
  data_file, run_dir = _exported_and_run_dir(tmp_path, "cal_ql")
  settings = {"config": {"dataset_id": "cql_jax/x/medium-replay-v0"}, "seeds": [0, 1],
              "peer": {"algo": "cal_ql", "steps": 4, "eval_every": 2, "eval_episodes": 1,
                       "eval_seed": 0, "hidden": "8", "overrides": {}, "online_steps": 6,
                       "online_eval_every": 3, "offline_fraction": 0.5}}
  # (gradient step, env step or None, score): offline evaluations at 2 and 4 (the last of them is
  # env step 0), then online ones every 3 environment steps at one update per step.
  rows = [(2, None, 5.0), (4, 0, 8.0), (7, 3, 6.0), (10, 6, 12.0)]
  for seed, shift in ((0, 0.0), (1, 100.0)):
    lines = [{"config": {}}] + [
        {"step": step, "return": 0.0, "normalized_score": score + shift, "seconds": 1.0,
         **({} if env is None else {"env_steps": env})} for step, env, score in rows]
    (run_dir / "seeds" / f"seed_{seed}.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines + [{"done": True}]))
  monkeypatch.setattr(peer.subprocess, "run", None)
  peer.run_algo("cal_ql", settings, data_file, run_dir, python="unused", log=lambda m: None)
  env_steps, scores = online_finetune.online_curve(run_dir)
  np.testing.assert_array_equal(env_steps, [0, 3, 6])   # the offline-only evaluation drops out
  np.testing.assert_array_equal(scores, [[8.0, 108.0], [6.0, 106.0], [12.0, 112.0]])


def test_an_online_phase_is_refused_where_the_peer_cannot_match_ours(tmp_path):
  import sys
  import pytest
  common = dict(dataset_id="cql_jax/pendulum/medium-replay-v0", steps=10, online_steps=100,
                python=sys.executable, log=lambda m: None)
  with pytest.raises(ValueError, match="offered for cql and cal_ql, not \\['bc'\\]"):
    peer.run(tmp_path / "a", ["cal_ql", "bc"], **common)
  like = tmp_path / "like"
  like.mkdir()
  from cql_jax.configs import base
  config = base.override(base.get_config(), {"dataset_id": "cql_jax/pointmaze/medium-replay-v0",
                                             "online.steps": 100, "online.utd": 2.0})
  (like / "config.json").write_text(json.dumps({"config": json.loads(config.to_json_best_effort()),
                                                "seeds": [0]}))
  with pytest.raises(ValueError, match="updates 2.0 times per environment step"):
    peer.run(tmp_path / "b", ["cal_ql"], like=str(like), steps=10, online_steps=100,
             python=sys.executable, log=lambda m: None)
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()   # refused before work


def test_the_peers_environment_flattens_and_transforms_as_the_data_says():
  """The peer's PointMaze: [observation, desired_goal] concatenated; online rewards r·10 − 5."""
  import gymnasium as gym
  import gymnasium_robotics
  from experiments import peer_d3rlpy
  gym.register_envs(gymnasium_robotics)
  kwargs = {"maze_map": [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1],
                         [1, 1, 1, 1, 1]], "reward_type": "dense", "max_episode_steps": 300}
  data = {"env_id": np.asarray("PointMaze_UMaze-v3"), "env_kwargs": np.asarray(json.dumps(kwargs))}
  raw = gym.make("PointMaze_UMaze-v3", **kwargs)
  env = peer_d3rlpy.make_env(data, ("observation", "desired_goal"), 10.0, -5.0)
  assert env.observation_space.shape == (6,)
  obs_raw, _ = raw.reset(seed=3)
  obs, _ = env.reset(seed=3)
  actions = np.random.default_rng(0).uniform(-1, 1, (5, 2))
  for action in actions:
    np.testing.assert_allclose(obs, [*obs_raw["observation"], *obs_raw["desired_goal"]], rtol=1e-6)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    obs_raw, r_raw, *_ = raw.step(action)
    obs, r, *_ = env.step(action)
    assert r_raw != 0.0 and abs(r - (10.0 * r_raw - 5.0)) < 1e-9   # dense: exp(−distance)
  # The evaluation's environment keeps the environment's own rewards.
  plain = peer_d3rlpy.make_env(data, ("observation", "desired_goal"))
  plain.reset(seed=3)
  raw.reset(seed=3)
  assert plain.step(actions[0])[1] == raw.step(actions[0])[1]
  with pytest.raises(SystemExit, match="array-valued keys of a dict observation only"):
    peer_d3rlpy.make_env(data, ("observation", "goal"))
