"""The peer harness: d3rlpy 2.8.1 trained on our datasets, evaluated the way cql_jax evaluates.

  make peer-venv     # once: .peer-venv with d3rlpy 2.8.1 and torch's CPU build (never in .venv)
  python -m experiments.peer --like=runs/compare-reacher/medium-replay/cql_h --algos=cql,bc \\
      --workdir=runs/peer-reacher/medium-replay
  python -m experiments.peer --dataset_id=cql_jax/reacher/medium-replay-v0 --algos=cql,bc \\
      --seeds=0,1,2,3 --steps=10000 --eval_every=1000 --hidden=64,64 --workdir=runs/peer-r-mr
  python -m experiments.plot --runs='CQL=runs/compare-reacher/*/cql_h' \\
      --runs='d3rlpy CQL=runs/peer-reacher/*/cql' --out=plots

Interface:
  --like=<our run's workdir>  take the dataset, budget and evaluation protocol from its
      config.json (dataset_id or dataset_path, data transform, num_steps, eval_every,
      eval_episodes, eval_seed, the actor's hidden sizes) and its seeds; any flag below given
      explicitly wins. Without --like, --dataset_id (a Minari id; "+" joins several) or
      --dataset_path (.npz) and --steps are required.
  --algos   cql, cal_ql, bc (continuous data), discrete_cql, discrete_bc (discrete data).
  --online_steps (cql, cal_ql) environment steps of d3rlpy's own online fine-tuning after the
      offline steps, evaluated every --online_eval_every environment steps, batches
      --offline_fraction offline data (default: --like's online.steps, online.eval_every and
      online.offline_fraction, so --like=<an experiments.online_finetune run> copies its
      schedule); the metrics' online evaluations carry "online/env_steps" as ours do.
  --seeds   d3rlpy seeds, trained one after another (d3rlpy has no vmap), each in its own
      process. --overrides=ALGO:JSON (repeatable) sets d3rlpy config fields, e.g.
      --overrides='discrete_cql:{"learning_rate": 1e-3, "target_update_interval": 1000}'.
  --workdir: one run directory per algorithm, <workdir>/<algo>/, laid out as cql_jax.runner's:
      config.json ({"config": {"dataset_id", ...}, "seeds", "peer": the d3rlpy settings}),
      metrics.jsonl (eval lines {"step", "kind": "eval", "seeds", "eval/return": [S],
      "eval/normalized_score": [S]}), results.json ({"final": {...}, "final_mean": {...}}), so
      experiments.plot overlays and aggregates them with ours; seeds/seed_<s>.jsonl holds each
      finished seed's evaluations (a rerun skips finished seeds, so a stopped job continues).

What is the same as ours: the transitions (exported from the loaded OfflineDataset, after the
config's reward transform; experiments/peer_d3rlpy.py rebuilds d3rlpy episodes that keep every
one), the gradient-step budget, the evaluation schedule (every eval_every steps and at the end),
episodes (eval_episodes, episode j reset with eval_seed + j, the greedy/mean action), the
environment (the dataset's env_id and env_kwargs, same Gymnasium and MuJoCo versions) and the
normalization (the dataset's ref_min_score / ref_max_score). The networks' hidden sizes are
ours. What is d3rlpy's: its algorithms' settings as its reproduction scripts set them
(peer_d3rlpy.ALGOS; recorded in config.json "peer"), its samplers and its initialisation.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import json
import os
import pathlib
import subprocess
import time
from typing import Dict, List, Optional

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
PEER_SCRIPT = REPO / "experiments" / "peer_d3rlpy.py"
DEFAULT_PYTHON = REPO / ".peer-venv" / "bin" / "python"
ALGOS = ("cql", "cal_ql", "bc", "discrete_cql", "discrete_bc")


def export(dataset, path) -> dict:
  """Writes `dataset`'s transitions for the peer (cql_jax.data.npz transition layout).

  Episode ends come from cql_jax.data.split.episode_starts; an end that did not terminate is
  marked a truncation, so the peer keeps its final next observation. Observations are the
  dataset's flat ones (dict observations flattened by its obs_keys) and rewards carry the
  config's transform; run_algo hands the peer both, so that its environment's observations and
  online rewards match them. Returns what was written.
  """
  from cql_jax.data import npz
  from cql_jax.data import split
  if dataset.ref_min_score is None or dataset.ref_max_score is None:
    raise ValueError(f"{dataset.dataset_id} records no ref_min_score/ref_max_score; the peer "
                     "reports normalized scores, so give the dataset reference scores.")
  if dataset.env_id is None:
    raise ValueError(f"{dataset.dataset_id} records no environment to evaluate in.")
  t = dataset.transitions
  size = int(t.reward.shape[0])
  starts = split.episode_starts(t)
  ends = np.append(starts[1:] - 1, size - 1)
  terminals = np.asarray(t.discount) == 0.0
  truncations = np.zeros(size, bool)
  truncations[ends] = ~terminals[ends]
  npz.save_npz(path, np.asarray(t.obs), np.asarray(t.action), np.asarray(t.reward), terminals,
               truncations, next_observations=np.asarray(t.next_obs), env_id=dataset.env_id,
               env_kwargs=dict(dataset.env_kwargs or {}), ref_min_score=dataset.ref_min_score,
               ref_max_score=dataset.ref_max_score, discrete=bool(dataset.discrete),
               num_actions=dataset.num_actions if dataset.discrete else None,
               action_low=None if dataset.discrete else dataset.action_low,
               action_high=None if dataset.discrete else dataset.action_high)
  return {"transitions": size, "episodes": int(starts.size), "env_id": dataset.env_id,
          "ref_min_score": float(dataset.ref_min_score),
          "ref_max_score": float(dataset.ref_max_score), "discrete": bool(dataset.discrete)}


def data_config(like: Optional[str], dataset_id: Optional[str], dataset_path: Optional[str]):
  """(runner config selecting the data, our run's saved config.json or None)."""
  import ml_collections
  from cql_jax.configs import base
  saved = None
  if like:
    path = pathlib.Path(like) / "config.json"
    if not path.exists():
      raise ValueError(f"--like={like} has no config.json; pass a run directory of "
                       "experiments.train or experiments.compare.")
    saved = json.loads(path.read_text())
    config = ml_collections.ConfigDict(saved["config"])
  else:
    config = base.get_config()
  if dataset_id or dataset_path:
    config.dataset_id, config.dataset_path = dataset_id, dataset_path
  if not (config.get("dataset_id") or config.get("dataset_path")):
    raise ValueError("name the data: --like=<run dir>, --dataset_id=<Minari id> or "
                     "--dataset_path=<file.npz>.")
  return config, saved


def hidden_of(config) -> str:
  agent = config.get("agent") or {}
  sizes = agent.get("actor_hidden_sizes") or agent.get("hidden_sizes")
  return ",".join(str(int(h)) for h in sizes) if sizes else "256,256"


def combine(seed_files: Dict[int, pathlib.Path]):
  """{step: {"eval/return": [S], "eval/normalized_score": [S]}} over the seeds' files, in seed
  order, on the steps every seed evaluated; "online/env_steps" too on the online phase's."""
  per_seed = {}
  for seed, path in seed_files.items():
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    per_seed[seed] = {r["step"]: r for r in lines if "step" in r}
  steps = sorted(set.intersection(*(set(v) for v in per_seed.values())))
  first = next(iter(per_seed.values()))
  return {step: {"eval/return": [per_seed[s][step]["return"] for s in seed_files],
                 "eval/normalized_score": [per_seed[s][step]["normalized_score"]
                                           for s in seed_files],
                 **({"online/env_steps": first[step]["env_steps"]}
                    if "env_steps" in first[step] else {})} for step in steps}


def run_algo(algo: str, settings: dict, data_file: pathlib.Path, workdir: pathlib.Path,
             python: str, log=print) -> dict:
  """Trains every seed not yet finished, then writes metrics.jsonl and results.json."""
  from cql_jax import writers
  workdir.mkdir(parents=True, exist_ok=True)
  config_path = workdir / "config.json"
  if config_path.exists():
    old = json.loads(config_path.read_text())
    if {k: old.get(k) for k in ("config", "peer")} != {k: settings[k] for k in ("config", "peer")}:
      raise ValueError(f"{workdir} holds a peer run with other settings; choose another "
                       "--workdir.")
  writers.atomic_write_json(config_path, settings)
  peer, data = settings["peer"], settings["config"].get("data") or {}
  seeds_dir = workdir / "seeds"
  seeds_dir.mkdir(exist_ok=True)
  files = {}
  for seed in settings["seeds"]:
    out = seeds_dir / f"seed_{seed}.jsonl"
    files[seed] = out
    if out.exists():
      continue
    # -I: neither PYTHONPATH nor the script's folder on sys.path: cql_jax must stay out of the
    # peer's interpreter.
    cmd = [python, "-I", str(PEER_SCRIPT), f"--data={data_file}", f"--algo={algo}", f"--seed={seed}",
           f"--steps={peer['steps']}", f"--eval_every={peer['eval_every']}",
           f"--eval_episodes={peer['eval_episodes']}", f"--eval_seed={peer['eval_seed']}",
           f"--hidden={peer['hidden']}", f"--overrides={json.dumps(peer['overrides'])}",
           f"--online_steps={peer.get('online_steps', 0)}",
           f"--online_eval_every={peer.get('online_eval_every', 1000)}",
           f"--offline_fraction={peer.get('offline_fraction', 0.5)}", f"--out={out}",
           # The data's own observation layout and reward transform (see export).
           f"--obs_keys={','.join(data.get('obs_keys') or ())}",
           f"--reward_scale={data.get('reward_scale', 1.0)}",
           f"--reward_bias={data.get('reward_bias', 0.0)}"]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
      raise RuntimeError(f"d3rlpy {algo} seed {seed} failed (exit {proc.returncode}):\n"
                         + proc.stderr[-3000:])
    last = [json.loads(line) for line in out.read_text().splitlines() if '"step"' in line][-1]
    log(f"{settings['config']['dataset_id']} d3rlpy {algo} seed {seed}: "
        f"{last['normalized_score']:.1f} at step {last['step']} ({time.time() - start:.0f} s)")
  evals = combine(files)
  metrics = workdir / writers.METRICS_FILE
  tmp = metrics.with_name(metrics.name + ".tmp")
  tmp.write_text("".join(json.dumps({"step": step, "kind": "eval", "seeds": settings["seeds"],
                                     **values}, sort_keys=True) + "\n"
                         for step, values in evals.items()))
  os.replace(tmp, metrics)
  final = evals[max(evals)]
  results = {"dataset_id": settings["config"]["dataset_id"], "seeds": settings["seeds"],
             "num_steps": peer["steps"], "final": final,
             "final_mean": {n: float(np.mean(v)) for n, v in final.items()},
             "evals": [{"step": s, **v} for s, v in evals.items()], "peer": peer}
  writers.atomic_write_json(workdir / "results.json", results)
  return results


def run(workdir, algos, *, like: Optional[str] = None, dataset_id: Optional[str] = None,
        dataset_path: Optional[str] = None, seeds=None, steps: Optional[int] = None,
        eval_every: Optional[int] = None, eval_episodes: Optional[int] = None,
        eval_seed: Optional[int] = None, hidden: Optional[str] = None,
        overrides: Optional[Dict[str, dict]] = None, python: Optional[str] = None,
        online_steps: Optional[int] = None, online_eval_every: Optional[int] = None,
        offline_fraction: Optional[float] = None, log=print) -> Dict[str, dict]:
  """Trains each of `algos` (every seed not yet finished); returns {algo: results.json}.

  Arguments as the flags of the same names (module docstring); None takes --like's value, or
  the base config's without it (steps is then required).
  """
  from cql_jax import runner
  unknown = [a for a in algos if a not in ALGOS]
  if unknown:
    raise ValueError(f"algos: unknown {unknown}; choose from {', '.join(ALGOS)}.")
  python = python or str(DEFAULT_PYTHON)
  if not pathlib.Path(python).exists():
    raise ValueError(f"no peer interpreter at {python}: run `make peer-venv` (or pass "
                     "--peer_python=<python with d3rlpy 2.8.1>).")
  overrides = overrides or {}
  for algo in overrides:
    if algo not in algos:
      raise ValueError(f"overrides for {algo!r}, which is not one of the algorithms {algos}.")
  config, saved = data_config(like, dataset_id, dataset_path)
  pick = lambda value, key: value if value is not None else config.get(key)
  if steps is None and not like:
    raise ValueError("--steps is required without --like.")
  seeds = list(seeds) if seeds else ((saved or {}).get("seeds") or [0])
  saved_online = config.get("online") or {}
  online = {"online_steps": int(online_steps if online_steps is not None
                                else saved_online.get("steps") or 0),
            "online_eval_every": int(online_eval_every or saved_online.get("eval_every") or 1000),
            "offline_fraction": float(offline_fraction if offline_fraction is not None
                                      else saved_online.get("offline_fraction", 0.5))}
  if online["online_steps"]:
    offline_only = [a for a in algos if a not in ("cql", "cal_ql")]
    if offline_only:
      raise ValueError(f"an online phase is offered for cql and cal_ql, not {offline_only}.")
    if float(saved_online.get("utd", 1.0)) != 1.0:
      raise ValueError(f"--like's run updates {saved_online['utd']} times per environment step; "
                       "the peer's online phase runs at 1.")
  common = {"steps": int(pick(steps, "num_steps")), "eval_every": int(pick(eval_every, "eval_every")),
            "eval_episodes": int(pick(eval_episodes, "eval_episodes")),
            "eval_seed": int(pick(eval_seed, "eval_seed")), "hidden": hidden or hidden_of(config),
            "like": like, **(online if online["online_steps"] else {})}
  selected = {"dataset_id": config.get("dataset_id") or str(config.get("dataset_path")),
              "dataset_path": config.get("dataset_path"),
              "data": json.loads(config.data.to_json_best_effort())}
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data_file = workdir / "data.npz"
  dataset = runner.load_data(config, download=False)
  info = export(dataset, data_file)
  for algo in algos:
    if info["discrete"] != algo.startswith("discrete_"):
      raise ValueError(f"algorithm {algo} does not fit {selected['dataset_id']} "
                       f"({'discrete' if info['discrete'] else 'continuous'} actions).")
  found = {}
  for algo in algos:
    settings = {"config": selected, "seeds": seeds, "data": info,
                "peer": {**common, "algo": algo, "overrides": overrides.get(algo, {})}}
    found[algo] = results = run_algo(algo, settings, data_file, workdir / algo, python, log)
    scores = np.asarray(results["final"]["eval/normalized_score"])
    log(f"{selected['dataset_id']} d3rlpy {algo}: {scores.mean():.1f} ± {scores.std():.1f} "
        f"over seeds {seeds} at {common['steps']} steps")
  return found


def main(argv):
  from absl import flags
  FLAGS = flags.FLAGS
  del argv
  overrides = {}
  for item in FLAGS.overrides:
    algo, _, text = item.partition(":")
    overrides[algo] = json.loads(text)
  try:
    run(FLAGS.workdir, list(FLAGS.algos), like=FLAGS.like, dataset_id=FLAGS.dataset_id,
        dataset_path=FLAGS.dataset_path,
        seeds=[int(s) for s in FLAGS.seeds] if FLAGS.seeds else None, steps=FLAGS.steps,
        eval_every=FLAGS.eval_every, eval_episodes=FLAGS.eval_episodes,
        eval_seed=FLAGS.eval_seed, hidden=FLAGS.hidden, overrides=overrides,
        python=FLAGS.peer_python, online_steps=FLAGS.online_steps,
        online_eval_every=FLAGS.online_eval_every, offline_fraction=FLAGS.offline_fraction,
        log=lambda m: print(m, flush=True))
  except ValueError as err:
    raise SystemExit(f"error: {err}") from None


def define_flags():
  from absl import flags
  flags.DEFINE_string("like", None, "Our run directory whose data, budget and evaluation to copy.")
  flags.DEFINE_string("dataset_id", None, "Minari id(s), '+'-joined (without --like).")
  flags.DEFINE_string("dataset_path", None, ".npz dataset (without --like).")
  flags.DEFINE_list("algos", ["cql", "bc"], f"d3rlpy algorithms: {', '.join(ALGOS)}.")
  flags.DEFINE_list("seeds", None, "Seeds (default: --like's, else 0).")
  flags.DEFINE_integer("steps", None, "Gradient steps per seed (default: --like's num_steps).")
  flags.DEFINE_integer("eval_every", None, "Steps between evaluations (default: --like's, "
                       "else base 10000).")
  flags.DEFINE_integer("eval_episodes", None, "Episodes per evaluation (default: --like's, else 10).")
  flags.DEFINE_integer("eval_seed", None, "Episode j is reset with eval_seed + j (default: "
                       "--like's, else 1000000).")
  flags.DEFINE_string("hidden", None, "Hidden sizes, e.g. 64,64 (default: --like's actor's).")
  flags.DEFINE_multi_string("overrides", [], "ALGO:JSON d3rlpy config fields for one algorithm.")
  flags.DEFINE_integer("online_steps", None, "Environment steps of online fine-tuning (cql, "
                       "cal_ql; default: --like's online.steps, else 0).")
  flags.DEFINE_integer("online_eval_every", None, "Environment steps between online evaluations "
                       "(default: --like's online.eval_every, else 1000).")
  flags.DEFINE_float("offline_fraction", None, "Offline share of each online batch (default: "
                     "--like's online.offline_fraction, else 0.5).")
  flags.DEFINE_string("peer_python", None, "Interpreter with d3rlpy (default .peer-venv).")
  flags.DEFINE_string("workdir", None, "Root: one run directory per algorithm.")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  from absl import app
  define_flags()
  app.run(main)
