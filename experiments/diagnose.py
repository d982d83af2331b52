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

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import json
import os
import pathlib
import time

from absl import app, flags
import numpy as np

# JAX and the JAX-heavy cql_jax modules are imported where used, so --help is quick.
from cql_jax import writers
from cql_jax.data import split
from cql_jax.makers import cartpole, mujoco_datasets, pendulum

FLAGS = flags.FLAGS
# name -> (family, kind, version, episodes (None: the maker's default), dataset seed). Version 1
# of CartPole medium-expert is a second, smaller draw (20 episodes, seed 1): the same policies,
# less coverage, to see whether a setting that wins on version 0 still wins on other data.
DATASETS = {"pend-expert": ("pendulum", "expert", 0, None, 0),
            "pend-me": ("pendulum", "medium-expert", 0, None, 0),
            "pend-mr": ("pendulum", "medium-replay", 0, None, 0),
            "cp-me": ("cartpole", "medium-expert", 0, None, 0),
            "cp-me-small": ("cartpole", "medium-expert", 1, 20, 1),
            "cp-mr": ("cartpole", "medium-replay", 0, None, 0),
            # The project's MuJoCo data (made by experiments/make_datasets.py, never here).
            "hop-me": ("hopper", "medium-expert", 0, None, 0),
            "hop-mr": ("hopper", "medium-replay", 0, None, 0)}

# Method name -> (variant or "discrete", overrides of the agent config). Continuous runs start from
# base.short_budget_agent_config(64); discrete ones from cql_jax/configs/cartpole.py's agent with
# DISCRETE_BASE on top: the CartPole recipe as it was when these runs were made (its target period
# has since become 2000, "dcql-tgt2000" here), so that rerunning a name repeats its run.
DISCRETE_BASE = {"target_update_period": 250}
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
    "cql-polyak02": ("cql_h", {"polyak": 0.02}),
    "dcql": ("discrete", {}),
    "dqn": ("discrete", {"cql.weight": 0.0}),
    "dcql-d3rlpy": ("discrete", {**D3RLPY, "batch": 32}),
    "dcql-lr": ("discrete", {"lr": 6.25e-5}),
    "dcql-tgt8000": ("discrete", {"target_update_period": 8000}),
    "dcql-tgt2000": ("discrete", {"target_update_period": 2000}),
    "dcql-double": ("discrete", {"double_dqn": True}),
    "dcql-h256": ("discrete", {"hidden_sizes": (256, 256)}),
    "dcql-w4": ("discrete", {"cql.weight": 4.0}),
}


def define_flags():
  flags.DEFINE_list("runs", None, "dataset/method names, e.g. pend-expert/cql.")
  flags.DEFINE_integer("num_steps", 10_000, "Gradient steps.")
  flags.DEFINE_integer("eval_every", 1000, "Evaluation interval (a multiple of 1000 or 5000).")
  flags.DEFINE_integer("num_seeds", 3, "Seeds (vmapped).")
  flags.DEFINE_integer("eval_episodes", 10, "Episodes per seed per evaluation.")
  flags.DEFINE_string("out", "results/diagnose.jsonl", "JSONL of finished runs.")
  flags.DEFINE_string("workdirs", "runs/diagnose", "Per-run workdirs (plot.py layout).")
  flags.DEFINE_list("plot", None, "Instead of training: draw results/*.png from these JSONL files.")


# Start index of each episode in flat transitions (after a termination or where obs jumps).
episode_bounds = split.episode_starts


def data_discounted_returns(t, gamma: float) -> np.ndarray:
  """Σ_t γ^t r_t of every episode from its first step, in the data's own (unscaled) rewards."""
  starts = episode_bounds(t)
  stops = np.append(starts[1:], len(t.reward))
  reward = np.asarray(t.reward, np.float64)
  return np.array([np.sum(reward[a:b] * gamma ** np.arange(b - a)) for a, b in zip(starts, stops)])


def data_truncated_returns(t, gamma: float, horizons) -> np.ndarray:
  """Mean over episodes of Σ_{t<k} γ^t r_t from each episode's first step, for each k in horizons.

  What a critic that has done k Bellman iterations from Q = 0 can represent at s0, if it
  follows the data's actions (a rough guide for Polyak targets, where k ≈ steps × polyak).
  """
  starts = episode_bounds(t)
  stops = np.append(starts[1:], len(t.reward))
  reward = np.asarray(t.reward, np.float64)
  longest = int(np.max(stops - starts))
  table = np.zeros((len(starts), longest + 1))   # [episode, k] cumulative discounted returns
  for i, (a, b) in enumerate(zip(starts, stops)):
    c = np.cumsum(reward[a:b] * gamma ** np.arange(b - a))
    table[i, 1:b - a + 1] = c
    table[i, b - a + 1:] = c[-1]
  mean = table.mean(0)
  return np.interp(np.minimum(horizons, longest), np.arange(longest + 1), mean)


def agent_config(method: str):
  from cql_jax.configs import base, cartpole as cartpole_config
  from cql_jax.continuous import variants
  kind, overrides = METHODS[method]
  if kind == "discrete":
    config = cartpole_config.get_config("medium-expert").agent.copy_and_resolve_references()
    overrides = {**DISCRETE_BASE, **{k: v for k, v in overrides.items() if k != "batch"}}
  else:
    config = variants.variant_config(kind, base.short_budget_agent_config(64))
  return base.override(config, overrides) if overrides else config


def q_probe(config, dataset, discrete: bool):
  """(q_s0_pi, q_s0_data)(state) for one unstacked state, at the dataset's first steps."""
  import jax
  import jax.numpy as jnp
  from cql_jax.continuous import networks as cnet
  from cql_jax.discrete import networks as dnet
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
  from cql_jax import train
  from cql_jax.agents import device_data, make_agent
  from cql_jax.data import minari_io
  from cql_jax.evaluation import evaluate_agent, seed_state
  data_name, method = name.split("/")
  family, kind, version, episodes, data_seed = DATASETS[data_name]
  discrete = family == "cartpole"
  if discrete:
    cartpole.ensure_cartpole_datasets([kind], num_episodes=episodes, seed=data_seed, version=version)
    dataset = minari_io.load_dataset(cartpole.dataset_id(kind, version))
  elif family in mujoco_datasets.ENVS:
    dataset = minari_io.load_dataset(mujoco_datasets.dataset_id(family, kind))
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


LABELS = {"cql": "CQL(H)", "bc": "BC", "sac": "offline SAC", "dcql": "DQN + CQL(H)",
          "dqn": "DQN (offline)", "dcql-d3rlpy": "CQL, d3rlpy settings",
          "dcql-tgt8000": "CQL, target period 8000"}
PANELS = [("Pendulum expert", "pend-expert", ["cql", "bc", "sac"]),
          ("Pendulum medium-expert", "pend-me", ["cql", "bc", "sac"]),
          ("CartPole medium-expert", "cp-me", ["dcql", "dqn", "dcql-d3rlpy"]),
          ("CartPole medium-expert, small draw", "cp-me-small", ["dcql", "dqn", "dcql-tgt8000"])]


def draw(paths, out_dir="results") -> None:
  records = load_records(paths)
  panels = [p for p in PANELS if any(f"{p[1]}/{m}" in records for m in p[2])]
  print("wrote", plot_scores(records, panels, pathlib.Path(out_dir) / "curves.png", FLAGS.workdirs,
                             LABELS))
  q_names = [n for n in ("pend-expert/cql", "pend-me/cql", "pend-expert/sac", "cp-me/dcql",
                         "cp-me/dcql-d3rlpy") if n in records]
  print("wrote", plot_q(records, q_names, pathlib.Path(out_dir) / "q_at_s0.png", LABELS))


def main(argv):
  del argv
  if FLAGS.plot:
    draw(FLAGS.plot)
    return
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



def load_records(paths) -> dict:
  """name -> record, from diagnosis JSONL files (later lines win)."""
  records = {}
  for path in paths:
    with open(path) as f:
      for line in f:
        r = json.loads(line)
        records[r["name"]] = r
  return records


def plot_scores(records: dict, panels, out_path, workdirs: str, labels=None) -> pathlib.Path:
  """One panel per dataset: mean ± std over seeds of each method's normalized score.

  panels: [(title, dataset, [methods])]. Curves are read from the runs' workdirs with
  experiments.plot.learning_curve (the runner's metrics.jsonl layout); the dashed line is the
  dataset's own mean score.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from experiments import plot

  labels = labels or {}
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
  for ax, (title, data_name, methods) in zip(axes.flat, panels):
    behaviour = None
    for method in methods:
      name = f"{data_name}/{method}"
      if name not in records:
        continue
      steps, values = plot.learning_curve(pathlib.Path(workdirs) / data_name / method)
      mean, std = values.mean(1), values.std(1)
      ax.plot(steps, mean, marker="o", ms=3, label=f"{labels.get(method, method)} ({values.shape[1]} seeds)")
      ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
      behaviour = records[name]["behaviour_score"]
    if behaviour is not None:
      ax.axhline(behaviour, color="k", ls="--", lw=1, label="dataset's own score")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel("normalized score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return plot.save_figure(fig, out_path, dpi=110)


def plot_q(records: dict, names, out_path, labels=None) -> pathlib.Path:
  """Per run: Q(s0, π(s0)) against the policy's measured discounted return and the data's."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from experiments import plot

  labels = labels or {}
  names = [n for n in names if n in records]
  fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.3), squeeze=False)
  for ax, name in zip(axes.flat, names):
    r = records[name]
    c = {k: np.asarray(v, np.float64) for k, v in r["curves"].items()}
    for key, label in (("q_s0_pi", "Q(s0, π(s0))"), ("disc_return", "π's discounted return"),
                       ("q_s0_data", "Q(s0, a_data)")):
      mean, std = c[key].mean(1), c[key].std(1)
      ax.plot(c["step"], mean, marker="o", ms=3, label=label)
      ax.fill_between(c["step"], mean - std, mean + std, alpha=0.2)
    ax.axhline(r["data_disc_return_s0"], color="k", ls="--", lw=1, label="data's discounted return")
    data_name, method = name.split("/")
    family, kind, version, _, _ = DATASETS[data_name]
    if METHODS[method][0] != "discrete" and family == "pendulum":
      # Polyak targets: ≈ one Bellman iteration per 1/polyak steps once the critic keeps up.
      steps = np.arange(0, c["step"][-1] + 1, 250)
      dataset = minari_io.load_dataset(pendulum.dataset_id(kind))
      polyak = float(agent_config(method).polyak)
      ax.plot(steps, data_truncated_returns(dataset.transitions, 0.99, steps * polyak), "k:", lw=1,
              label="data's k-step return, k = steps × polyak")
    period = METHODS[name.split("/")[1]][1].get("target_update_period")
    if METHODS[name.split("/")[1]][0] == "discrete":
      # k hard target syncs = k Bellman iterations from Q = 0: Q <= (1 − γ^k)/(1 − γ) for r = 1.
      period = period or DISCRETE_BASE["target_update_period"]
      k = np.arange(0, c["step"][-1] + 1, 500) // period
      ax.plot(np.arange(0, c["step"][-1] + 1, 500), (1 - 0.99 ** k) / 0.01, "k:", lw=1,
              label="(1 − γ^k)/(1 − γ), k = target syncs")
    ax.set_title(labels.get(name, name), fontsize=10)
    ax.set_xlabel("gradient steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return plot.save_figure(fig, out_path, dpi=110)


if __name__ == "__main__":
  define_flags()
  app.run(main)
