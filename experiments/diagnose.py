"""Recipe diagnosis: one hyperparameter changed at a time, with curves of score and Q scale.

Each named run trains --num_seeds vmapped seeds of one configuration on one of the project's
datasets and, every --eval_every gradient steps, records per seed:
  score        normalized score of the deterministic policy (--eval_episodes episodes),
  disc_return  its γ-discounted return in those episodes (what Q(s0, π(s0)) should estimate),
  q_s0_pi      min over critics of Q(s0, π_det(s0)) (continuous) / max_a Q(s0, a) (discrete),
               averaged over the dataset's initial states,
  q_s0_data    the same Q at the dataset's own first actions,
and per chunk the training metrics (Q on data batches, Bellman/TD error, SAC temperature).
The dataset's own discounted return from its initial states (NumPy, `data_discounted_returns`)
is stored with each run, so over- or under-estimation can be read against it.

Results append one JSON line per run to --out (a rerun with the same settings skips finished
runs) and each run also gets a workdir under --workdirs in the runner's layout (config.json,
metrics.jsonl with "eval" records), so experiments/plot.py can read the curves.

  PYTHONPATH=$PWD MINARI_DATASETS_PATH=$PWD/data/minari python -m experiments.diagnose \\
      --runs=pend-expert/cql,pend-expert/bc --num_steps=10000 --num_seeds=3
"""
from __future__ import annotations

import json
import os
import pathlib
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from cql_jax import train, writers
from cql_jax.agents import device_data, make_agent
from cql_jax.configs import base, cartpole as cartpole_config
from cql_jax.continuous import networks as cnet, variants
from cql_jax.data import minari_io
from cql_jax.discrete import networks as dnet
from cql_jax.evaluation import evaluate_agent, seed_state
from cql_jax.makers import cartpole, pendulum

FLAGS = flags.FLAGS
DATASETS = {"pend-expert": ("pendulum", "expert"), "pend-me": ("pendulum", "medium-expert"),
            "pend-mr": ("pendulum", "medium-replay"), "cp-me": ("cartpole", "medium-expert"),
            "cp-mr": ("cartpole", "medium-replay")}

# Method name -> (variant or "discrete", overrides of the agent config). Continuous runs start from
# base.short_budget_agent_config(64); discrete ones from cql_jax/configs/cartpole.py's agent.
D3RLPY = {"lr": 6.25e-5, "target_update_period": 8000, "hidden_sizes": (256, 256),
          "double_dqn": True, "adam_eps": 1e-8}
METHODS = {
    "cql": ("cql_h", {}),
    "bc": ("bc", {}),
    "sac": ("sac", {}),
    "cql-alr1e-4": ("cql_h", {"actor_lr": 1e-4, "alpha_lr": 1e-4}),
    "cql-alr1e-3": ("cql_h", {"actor_lr": 1e-3, "alpha_lr": 1e-3}),
    "cql-bc2k": ("cql_h", {"bc_steps": 2000}),
    "cql-bc5k": ("cql_h", {"bc_steps": 5000}),
    "cql-w1": ("cql_h", {"cql.weight": 1.0}),
    "cql-w20": ("cql_h", {"cql.weight": 20.0}),
    "cql-lag5": ("cql_h", {"cql.lagrange": True, "cql.target_gap": 5.0}),
    "cql-lag1": ("cql_h", {"cql.lagrange": True, "cql.target_gap": 1.0}),
    "cql-h256": ("cql_h", {"actor_hidden_sizes": (256, 256), "critic_hidden_sizes": (256, 256)}),
    "cql-fixtemp": ("cql_h", {"auto_entropy": False, "init_log_alpha": float(np.log(0.01))}),
    "cql-fixtemp0": ("cql_h", {"auto_entropy": False, "init_log_alpha": -30.0}),
    "cql-clr3e-4": ("cql_h", {"critic_lr": 3e-4}),
    "dcql": ("discrete", {}),
    "dqn": ("discrete", {"cql_weight": 0.0}),
    "dcql-d3rlpy": ("discrete", {**D3RLPY, "batch": 32}),
    "dcql-lr": ("discrete", {"lr": 6.25e-5}),
    "dcql-tgt8000": ("discrete", {"target_update_period": 8000}),
    "dcql-tgt2000": ("discrete", {"target_update_period": 2000}),
    "dcql-double": ("discrete", {"double_dqn": True}),
    "dcql-h256": ("discrete", {"hidden_sizes": (256, 256)}),
    "dcql-w4": ("discrete", {"cql_weight": 4.0}),
}


def define_flags():
  flags.DEFINE_list("runs", None, "dataset/method names, e.g. pend-expert/cql.")
  flags.DEFINE_integer("num_steps", 10_000, "Gradient steps.")
  flags.DEFINE_integer("eval_every", 1000, "Evaluation interval (a multiple of 1000 or 5000).")
  flags.DEFINE_integer("num_seeds", 3, "Seeds (vmapped).")
  flags.DEFINE_integer("eval_episodes", 10, "Episodes per seed per evaluation.")
  flags.DEFINE_string("out", "results/diagnose.jsonl", "JSONL of finished runs.")
  flags.DEFINE_string("workdirs", "runs/diagnose", "Per-run workdirs (plot.py layout).")
  flags.mark_flag_as_required("runs")


def episode_bounds(t) -> np.ndarray:
  """Start index of each episode in flat transitions: after a termination or where obs jumps."""
  obs, next_obs, discount = (np.asarray(x) for x in (t.obs, t.next_obs, t.discount))
  ends = (discount[:-1] == 0) | np.any(next_obs[:-1] != obs[1:], axis=tuple(range(1, obs.ndim)))
  return np.concatenate([[0], np.nonzero(ends)[0] + 1])


def data_discounted_returns(t, gamma: float) -> np.ndarray:
  """Σ_t γ^t r_t of every episode from its first step, in the data's own (unscaled) rewards."""
  starts = episode_bounds(t)
  stops = np.append(starts[1:], len(t.reward))
  reward = np.asarray(t.reward, np.float64)
  return np.array([np.sum(reward[a:b] * gamma ** np.arange(b - a)) for a, b in zip(starts, stops)])


def agent_config(method: str):
  kind, overrides = METHODS[method]
  if kind == "discrete":
    config = cartpole_config.get_config("medium-expert").agent.copy_and_resolve_references()
    overrides = {k: v for k, v in overrides.items() if k != "batch"}
  else:
    config = variants.variant_config(kind, base.short_budget_agent_config(64))
  return base.override(config, overrides) if overrides else config


def q_probe(config, dataset, discrete: bool):
  """(q_s0_pi, q_s0_data)(state) for one unstacked state, at the dataset's first steps."""
  t = dataset.transitions
  starts = episode_bounds(t)
  obs0 = jnp.asarray(t.obs[starts], jnp.float32)
  if discrete:
    network = dnet.make_q_network(config, int(dataset.num_actions))
    a0 = jnp.asarray(t.action[starts], jnp.int32)

    @jax.jit
    def probe(state):
      q = dnet.mean_q(network.apply(state.params, obs0), config.loss)
      return q.max(-1).mean(), jnp.take_along_axis(q, a0[:, None], 1).mean()
    return probe
  low, high = dataset.action_low, dataset.action_high
  a0 = jnp.asarray(2 * (t.action[starts] - low) / (high - low) - 1, jnp.float32)
  actor = cnet.TanhGaussianActor(a0.shape[-1], tuple(config.actor_hidden_sizes),
                                 config.log_std_min, config.log_std_max)
  critic = cnet.CriticEnsemble(int(config.num_critics), tuple(config.critic_hidden_sizes))

  @jax.jit
  def probe(state):
    mean, _ = actor.apply(state.actor_params, obs0)
    q_pi = critic.apply(state.critic_params, obs0, jnp.tanh(mean)[:, None]).min(0)
    q_d = critic.apply(state.critic_params, obs0, a0[:, None]).min(0)
    return q_pi.mean(), q_d.mean()
  return probe


def run(name: str, settings: dict) -> dict:
  data_name, method = name.split("/")
  family, kind = DATASETS[data_name]
  discrete = family == "cartpole"
  if discrete:
    cartpole.ensure_cartpole_datasets([kind])
    dataset = minari_io.load_dataset(cartpole.dataset_id(kind))
  else:
    pendulum.ensure_pendulum_datasets([kind])
    dataset = minari_io.load_dataset(pendulum.dataset_id(kind))
  config = agent_config(method)
  batch = METHODS[method][1].get("batch", 64 if discrete else 256)
  agent = make_agent(config, dataset)
  probe = q_probe(config, dataset, discrete)
  workdir = pathlib.Path(FLAGS.workdirs) / data_name / method
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / writers.METRICS_FILE).unlink(missing_ok=True)
  writers.atomic_write_json(workdir / "config.json", {"config": {
      "dataset_id": dataset.dataset_id, "method": method, "agent": config.to_dict(),
      "batch_size": batch}, "seeds": list(range(FLAGS.num_seeds))})
  curves = {k: [] for k in ("step", "score", "disc_return", "q_s0_pi", "q_s0_data")}
  train_curves = {}
  start = time.time()

  def on_chunk(step, states, metrics):
    for k, v in metrics.items():
      train_curves.setdefault(k, []).append(np.asarray(v, np.float64).reshape(-1).tolist())
    train_curves.setdefault("step", []).append(step)
    with open(workdir / writers.METRICS_FILE, "a") as f:
      f.write(json.dumps({"kind": "train", "step": step, **{
          k: np.asarray(v).tolist() for k, v in metrics.items()}}) + "\n")
    if step % FLAGS.eval_every:
      return
    res = [evaluate_agent(agent, seed_state(states, s), dataset, num_episodes=FLAGS.eval_episodes,
                          seed=1000 + s) for s in range(FLAGS.num_seeds)]
    probes = [probe(seed_state(states, s)) for s in range(FLAGS.num_seeds)]
    curves["step"].append(step)
    curves["score"].append([float(r.mean_normalized) for r in res])
    curves["disc_return"].append([float(r.discounted_returns.mean()) for r in res])
    curves["q_s0_pi"].append([float(p[0]) for p in probes])
    curves["q_s0_data"].append([float(p[1]) for p in probes])
    with open(workdir / writers.METRICS_FILE, "a") as f:
      f.write(json.dumps({"kind": "eval", "step": step,
                          "eval/normalized_score": curves["score"][-1],
                          "eval/q_s0_pi": curves["q_s0_pi"][-1]}) + "\n")
    print(f"{name:28s} step {step:6d} score {np.mean(curves['score'][-1]):7.1f} "
          f"q_s0_pi {np.mean(curves['q_s0_pi'][-1]):8.1f} disc {np.mean(curves['disc_return'][-1]):8.1f}"
          f"  {time.time() - start:5.0f} s", flush=True)

  train.fit(agent, device_data(dataset), seed=0, num_steps=FLAGS.num_steps,
            steps_per_chunk=1000 if not discrete else 1000, batch_size=batch,
            num_seeds=FLAGS.num_seeds, on_chunk=on_chunk)
  g = data_discounted_returns(dataset.transitions, float(config.gamma))
  return {"name": name, "settings": settings, "curves": curves, "train": train_curves,
          "data_disc_return_s0": float(g.mean()), "data_disc_return_s0_std": float(g.std()),
          "behaviour_score": float(np.mean(100 * (dataset.episode_returns - dataset.ref_min_score)
                                           / (dataset.ref_max_score - dataset.ref_min_score))),
          "seconds": time.time() - start}


def main(argv):
  del argv
  settings = {"num_steps": FLAGS.num_steps, "num_seeds": FLAGS.num_seeds,
              "eval_every": FLAGS.eval_every, "eval_episodes": FLAGS.eval_episodes}
  done = set()
  if os.path.exists(FLAGS.out):
    with open(FLAGS.out) as f:
      done = {r["name"] for r in map(json.loads, f) if r["settings"] == settings}
  for name in FLAGS.runs:
    if name in done:
      continue
    record = run(name, settings)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, "a") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()
      os.fsync(f.fileno())


if __name__ == "__main__":
  define_flags()
  app.run(main)
