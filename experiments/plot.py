"""Learning curves and rliable aggregates from run directories written by experiments.train.

  python -m experiments.plot --runs=runs/pendulum-* --out=plots
  python -m experiments.plot --runs=CQL=runs/cql-* --runs=SAC=runs/sac-* --out=plots

  python -m experiments.plot --sweep='runs/sweep*' --out=plots   # hyperparameter sweeps

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


# ---------------------------------------------------------------------------
# Sweeps (experiments.train --sweep): score against each swept hyperparameter.
# ---------------------------------------------------------------------------


def _flat(tree: dict, prefix: str = "") -> Dict[str, object]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v if not isinstance(v, list) else tuple(v)
  return out


def _member_settings(workdir) -> Tuple[List[dict], List[int]]:
  """(setting, seed) of each member of a run, in the order of its metric arrays."""
  saved = json.loads(pathlib.Path(workdir, "config.json").read_text())
  sweep = saved.get("sweep")
  settings = sweep["settings"] if sweep else [{}]
  return ([dict(s) for s in settings for _ in saved["seeds"]],
          [seed for _ in settings for seed in saved["seeds"]])


def _run_differences(workdirs: Sequence) -> List[Dict[str, object]]:
  """Per workdir, the config values that differ between the workdirs (a key swept by running
  one workdir per value, e.g. network sizes), keyed like sweep settings ("agent.…")."""
  flats = [_flat(json.loads(pathlib.Path(w, "config.json").read_text())["config"])
           for w in workdirs]
  keys = sorted({k for f in flats for k in f if k != "config_arg"})
  varying = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
  return [{k: f.get(k) for k in varying} for f in flats]


def sweep_table(workdirs: Sequence, metric: str = DEFAULT_METRIC) -> List[dict]:
  """One row per setting over all finished `workdirs`: {"setting", "scores" (over seeds),
  "mean", "std", "iqm"}. Config keys that differ between workdirs join each row's setting."""
  from cql_jax import sweep
  groups: Dict[str, dict] = {}
  for workdir, extra in zip(workdirs, _run_differences(workdirs)):
    path = pathlib.Path(workdir) / "results.json"
    if not path.exists():
      raise ValueError(f"{workdir} has no results.json (the sweep has not finished); leave it "
                       "out or finish it with --resume.")
    final = json.loads(path.read_text())["final"]
    if metric not in final:
      raise ValueError(f"{path} has no final '{metric}'; it has {sorted(final)}.")
    settings, _ = _member_settings(workdir)
    for setting, score in zip(settings, final[metric]):
      setting = {**extra, **setting}
      row = groups.setdefault(json.dumps(setting, sort_keys=True), {"setting": setting,
                                                                     "scores": []})
      row["scores"].append(float(score))
  rows = list(groups.values())
  for row in rows:
    x = np.asarray(row["scores"])
    row.update(mean=float(x.mean()), std=float(x.std()), iqm=sweep.iqm(x))
  return rows


def _axis_values(values):
  """Numeric x positions and tick labels for a hyperparameter's values (strings: categories)."""
  if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
    return [float(v) for v in values], None
  labels = sorted({repr(v) for v in values})
  return [float(labels.index(repr(v))) for v in values], labels


def plot_sweep(workdirs: Sequence, out_dir, metric: str = DEFAULT_METRIC) -> List[pathlib.Path]:
  """sweep.png: final score (mean ± std over seeds) against each swept hyperparameter, one line
  per combination of the others; sweep_curves.png: each setting's learning curve (mean ± std
  over seeds). Returns the PNG paths."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  rows = sweep_table(workdirs, metric)
  keys = list(rows[0]["setting"]) if rows else []
  if not keys:
    raise ValueError(f"{list(workdirs)} hold no sweep: no swept key and no config key that "
                     "differs between them.")
  short = lambda k: k[len("agent."):] if k.startswith("agent.") else k
  fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), squeeze=False)
  for ax, key in zip(axes.flat, keys):
    others = [k for k in keys if k != key]
    lines: Dict[str, list] = {}
    for row in rows:
      label = ", ".join(f"{short(k)}={row['setting'][k]}" for k in others) or "all"
      lines.setdefault(label, []).append(row)
    if len(lines) > 1 and all(len(group) == 1 for group in lines.values()):
      # Zipped axes: the other keys move with this one, so one line joins the settings.
      lines = {"with " + ", ".join(map(short, others)): rows}
    for label, group in lines.items():
      xs, _ = _axis_values([r["setting"][key] for r in group])
      order = np.argsort(xs)
      ax.errorbar(np.asarray(xs)[order], [group[i]["mean"] for i in order],
                  yerr=[group[i]["std"] for i in order], marker="o", capsize=3, label=label)
    values = [r["setting"][key] for r in rows]
    xs, ticks = _axis_values(values)
    if (ticks is None and min(xs) > 0 and max(xs) / min(xs) >= 10):
      ax.set_xscale("log")
      ax.minorticks_off()
    # Ticks at the swept values themselves (a sweep has few), labelled as given.
    unique = sorted(set(xs))
    if len(unique) <= 12:
      labels = ticks or [f"{x:g}" for x in unique]
      ax.set_xticks(unique, labels, fontsize=7, rotation=30 if len(unique) > 5 else 0)
    ax.set_xlabel(short(key))
    ax.set_ylabel(f"final {metric.split('/')[-1]}")
    ax.grid(alpha=0.3)
    if list(lines) != ["all"]:
      ax.legend(fontsize=7)
    ax.set_title("final score, mean ± std over seeds", fontsize=9)
  fig.tight_layout()
  paths = [out_dir / "sweep.png"]
  fig.savefig(paths[0], dpi=120)
  plt.close(fig)

  fig, axes = plt.subplots(1, len(workdirs), figsize=(5.5 * len(workdirs), 3.6), squeeze=False)
  for ax, workdir, extra in zip(axes.flat, workdirs, _run_differences(workdirs)):
    steps, values = learning_curve(workdir, metric)                       # [T], [T, M]
    settings, _ = _member_settings(workdir)
    by_setting: Dict[str, list] = {}
    for m, setting in enumerate(settings):
      name = ", ".join(f"{short(k)}={v}" for k, v in {**extra, **setting}.items()) or "run"
      by_setting.setdefault(name, []).append(m)
    for name, columns in by_setting.items():
      mean, std = values[:, columns].mean(axis=1), values[:, columns].std(axis=1)
      ax.plot(steps, mean, marker="o", markersize=3, label=name)
      ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_title(_dataset_name(workdir), fontsize=9)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  fig.tight_layout()
  paths.append(out_dir / "sweep_curves.png")
  fig.savefig(paths[1], dpi=120)
  plt.close(fig)
  return paths


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
  if FLAGS.sweep:
    workdirs = [d for dirs in parse_runs(FLAGS.sweep).values() for d in dirs]
    for path in plot_sweep(workdirs, FLAGS.out, FLAGS.metric):
      print(f"wrote {path}")
    from cql_jax import sweep
    print(sweep.format_table(sweep_table(workdirs, FLAGS.metric)))
    return
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
  flags.DEFINE_multi_string("sweep", None, "Glob of sweep workdirs (experiments.train --sweep); "
                            "config keys that differ between them count as swept keys too.")
  flags.mark_flags_as_mutual_exclusive(["runs", "sweep"], required=True)
  app.run(main)
