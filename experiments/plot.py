"""Learning curves and rliable aggregates from run directories written by experiments.train.

  python -m experiments.plot --runs=runs/pendulum-* --out=plots
  python -m experiments.plot --runs=CQL=runs/cql-* --runs=SAC=runs/sac-* --out=plots

Each --runs value is a glob of workdirs, optionally prefixed "LABEL=" (default label "cql_jax").
Writes <out>/curves.png (mean ± std over seeds per run, from metrics.jsonl) and, when runs have
results.json, <out>/aggregate.png + aggregate.json: IQM, mean and optimality gap over all
(seed, dataset) final scores per label with stratified-bootstrap 95% confidence intervals.
"""
from __future__ import annotations

import glob
import json
import pathlib
from typing import Dict, List, Sequence, Tuple

import numpy as np

from cql_jax import writers

DEFAULT_METRIC = "eval/normalized_score"


def learning_curve(workdir, metric: str = DEFAULT_METRIC) -> Tuple[np.ndarray, np.ndarray]:
  """(steps [T], values [T, S]) of an eval metric from a run's metrics.jsonl."""
  records = [r for r in writers.read_jsonl(pathlib.Path(workdir) / writers.METRICS_FILE)
             if r.get("kind") == "eval" and metric in r]
  if not records:
    raise ValueError(f"{workdir} has no '{metric}' evaluations in {writers.METRICS_FILE} yet.")
  steps = np.array([r["step"] for r in records])
  return steps, np.array([np.atleast_1d(r[metric]) for r in records], np.float64)


def plot_curves(workdirs: Sequence, out_path, metric: str = DEFAULT_METRIC) -> pathlib.Path:
  """One panel per run: mean over seeds with a ±1 std band. Returns the PNG path."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  cols = min(3, len(workdirs))
  rows = -(-len(workdirs) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
  for ax, workdir in zip(axes.flat, workdirs):
    steps, values = learning_curve(workdir, metric)
    mean, std = values.mean(axis=1), values.std(axis=1)
    ax.plot(steps, mean)
    ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
    ax.set_title(f"{_dataset_name(workdir)} ({values.shape[1]} seeds)", fontsize=9)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(workdirs):]:
    ax.axis("off")
  fig.tight_layout()
  out_path = pathlib.Path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out_path, dpi=120)
  plt.close(fig)
  return out_path


def _dataset_name(workdir) -> str:
  config = pathlib.Path(workdir) / "config.json"
  if config.exists():
    return json.loads(config.read_text())["config"].get("dataset_id") or str(workdir)
  return str(workdir)


def final_scores(workdirs: Sequence, metric: str = DEFAULT_METRIC) -> np.ndarray:
  """Score matrix [num_seeds, num_runs] of final evaluations, in fractions (score / 100).

  rliable's optimality gap measures the distance below 1.0 = expert, hence the division.
  """
  columns = []
  for workdir in workdirs:
    path = pathlib.Path(workdir) / "results.json"
    if not path.exists():
      raise ValueError(f"{workdir} has no results.json (the run has not finished); leave it out "
                       "of the aggregate or finish it with --resume.")
    final = json.loads(path.read_text())["final"]
    if metric not in final:
      raise ValueError(f"{path} has no final '{metric}'; it has {sorted(final)}.")
    columns.append(np.asarray(final[metric], np.float64) / 100.0)
  sizes = {len(c) for c in columns}
  if len(sizes) != 1:
    raise ValueError(f"runs have different numbers of seeds {sorted(sizes)}; rliable needs a "
                     "[seeds, datasets] matrix, so sweep the same seeds on every dataset.")
  return np.stack(columns, axis=1)


def aggregate(groups: Dict[str, Sequence], out_dir, metric: str = DEFAULT_METRIC,
              reps: int = 2000, seed: int = 0) -> Dict[str, dict]:
  """IQM, mean and optimality gap with 95% stratified-bootstrap CIs per label.

  Writes aggregate.json and aggregate.png under out_dir and returns the numbers.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from rliable import library as rly
  from rliable import metrics as rly_metrics
  from rliable import plot_utils

  names = ["IQM", "Mean", "Optimality Gap"]
  scores = {label: final_scores(dirs, metric) for label, dirs in groups.items()}
  aggregate_fn = lambda x: np.array([rly_metrics.aggregate_iqm(x), rly_metrics.aggregate_mean(x),
                                     rly_metrics.aggregate_optimality_gap(x)])
  np.random.seed(seed)  # rliable's bootstrap draws from NumPy's global generator.
  points, intervals = rly.get_interval_estimates(scores, aggregate_fn, reps=reps)
  summary = {label: {name: {"point": float(points[label][i]),
                            "ci95": [float(intervals[label][0, i]), float(intervals[label][1, i])]}
                     for i, name in enumerate(names)} | {"matrix_shape": list(scores[label].shape)}
             for label in groups}
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  writers.atomic_write_json(out_dir / "aggregate.json", summary)
  fig, _ = plot_utils.plot_interval_estimates(points, intervals, metric_names=names,
                                              algorithms=list(groups),
                                              xlabel="normalized score / 100")
  fig.savefig(out_dir / "aggregate.png", dpi=120, bbox_inches="tight")
  plt.close(fig)
  return summary


def parse_runs(specs: Sequence[str]) -> Dict[str, List[str]]:
  """["CQL=runs/a*", "runs/b"] -> {"CQL": [...], "cql_jax": [...]} (globs expanded, sorted)."""
  groups: Dict[str, List[str]] = {}
  for spec in specs:
    label, sep, pattern = spec.partition("=")
    if not sep:
      label, pattern = "cql_jax", spec
    matched = sorted(p for p in glob.glob(pattern) if pathlib.Path(p, "config.json").exists())
    if not matched:
      raise ValueError(f"--runs={spec}: no run directory (one with config.json) matches '{pattern}'.")
    groups.setdefault(label, []).extend(matched)
  return groups


def main(argv):
  del argv
  from absl import flags  # local: the functions above are importable without flag state.
  FLAGS = flags.FLAGS
  groups = parse_runs(FLAGS.runs)
  out = pathlib.Path(FLAGS.out)
  workdirs = [d for dirs in groups.values() for d in dirs]
  print(f"wrote {plot_curves(workdirs, out / 'curves.png', FLAGS.metric)}")
  finished = {label: [d for d in dirs if pathlib.Path(d, "results.json").exists()]
              for label, dirs in groups.items()}
  finished = {label: dirs for label, dirs in finished.items() if dirs}
  if finished:
    summary = aggregate(finished, out, FLAGS.metric, FLAGS.reps)
    print(json.dumps(summary, indent=1))
    print(f"wrote {out / 'aggregate.png'} and {out / 'aggregate.json'}")


if __name__ == "__main__":
  from absl import app
  from absl import flags

  flags.DEFINE_multi_string("runs", None, "Glob of run workdirs, optionally 'LABEL=glob'.")
  flags.DEFINE_string("out", "plots", "Output directory for the PNGs and aggregate.json.")
  flags.DEFINE_string("metric", DEFAULT_METRIC, "Eval metric to plot (a key in metrics.jsonl).")
  flags.DEFINE_integer("reps", 2000, "Bootstrap replications for the confidence intervals.")
  flags.mark_flag_as_required("runs")
  app.run(main)
