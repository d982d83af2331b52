"""Learning curves and rliable aggregates from run directories (experiments.train, compare, table4, demo).

  python -m experiments.plot --runs='runs/pendulum-*' --out=plots
  python -m experiments.plot --runs='CQL(H)=runs/compare-hopper/*/cql_h' \
      --runs='BC=runs/compare-hopper/*/bc' --runs='offline SAC=runs/compare-hopper/*/sac' --out=plots

  python -m experiments.plot --sweep='runs/sweep*' --out=plots   # hyperparameter sweeps

Each --runs value is a glob of workdirs, optionally prefixed "LABEL=" (default label: the glob).
Writes <out>/curves.png, one panel per dataset with every label's curve overlaid (mean ± std over
seeds, from metrics.jsonl; runs of one label on one dataset pool their seeds), and, when runs have
results.json, <out>/aggregate.png + aggregate.json: IQM, mean and optimality gap over all
(seed, dataset) final scores per label with stratified-bootstrap 95% confidence intervals.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import glob
import json
import pathlib
from typing import Dict, List, Sequence, Tuple

import numpy as np

from cql_jax import writers

DEFAULT_METRIC = "eval/normalized_score"
AGGREGATE_METRICS = ("IQM", "Mean", "Optimality Gap")


def learning_curve(workdir, metric: str = DEFAULT_METRIC) -> Tuple[np.ndarray, np.ndarray]:
  """(steps [T], values [T, S]) of an eval metric from a run's metrics.jsonl."""
  records = [r for r in writers.read_jsonl(pathlib.Path(workdir) / writers.METRICS_FILE)
             if r.get("kind") == "eval" and metric in r]
  if not records:
    raise ValueError(f"{workdir} has no '{metric}' evaluations in {writers.METRICS_FILE} yet.")
  steps = np.array([r["step"] for r in records])
  return steps, np.array([np.atleast_1d(r[metric]) for r in records], np.float64)


def dataset_name(workdir) -> str:
  """The run's dataset id (with appended ids joined by '+'), from its config.json."""
  path = pathlib.Path(workdir) / "config.json"
  if not path.exists():
    return str(workdir)
  config = json.loads(path.read_text())["config"]
  ids = [config.get("dataset_id") or str(workdir), *(config.get("extra_dataset_ids") or ())]
  return "+".join(ids)


def pooled_curve(workdirs: Sequence, metric: str = DEFAULT_METRIC):
  """(steps [T], values [T, S_total]) of runs pooled over their seeds, on the steps all share."""
  curves = [learning_curve(w, metric) for w in workdirs]
  common = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
  if not common:
    raise ValueError(f"runs {list(map(str, workdirs))} share no evaluation step; pool only runs "
                     "evaluated on the same schedule.")
  values = [v[np.searchsorted(s, common)] for s, v in curves]
  return np.asarray(common), np.concatenate(values, axis=1)


def curves_by_dataset(groups: Dict[str, Sequence], metric: str = DEFAULT_METRIC
                      ) -> Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]]:
  """{dataset: {label: (steps [T], values [T, S])}}, datasets and labels in first-seen order."""
  by_dataset: Dict[str, Dict[str, List]] = {}
  for label, dirs in groups.items():
    for workdir in dirs:
      by_dataset.setdefault(dataset_name(workdir), {}).setdefault(label, []).append(workdir)
  return {d: {label: pooled_curve(dirs, metric) for label, dirs in runs.items()}
          for d, runs in by_dataset.items()}


def _steps_label(x, _=None) -> str:
  """500 -> "500", 2500 -> "2.5k", 1e6 -> "1M"."""
  for scale, suffix in ((1e6, "M"), (1e3, "k")):
    if abs(x) >= scale:
      return f"{x / scale:g}{suffix}"
  return f"{x:g}"


def plot_curves(groups: Dict[str, Sequence], out_path, metric: str = DEFAULT_METRIC
                ) -> pathlib.Path:
  """One panel per dataset, each label's mean over seeds with a ±1 std band. Returns the PNG.

  groups: label -> run directories (a list of directories alone is one unlabelled group).
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker  # noqa: F401  (matplotlib.ticker.FuncFormatter below)

  if not isinstance(groups, dict):
    groups = {"": list(groups)}
  curves = curves_by_dataset(groups, metric)
  labels = list(groups)
  colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
  cols = min(3, len(curves))
  rows = -(-len(curves) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
  for ax, (dataset, runs) in zip(axes.flat, curves.items()):
    for label, (steps, values) in runs.items():
      mean, std = values.mean(axis=1), values.std(axis=1)
      ax.plot(steps, mean, color=colors[label], lw=1.8,
              label=f"{label} ({values.shape[1]} seeds)" if label else f"{values.shape[1]} seeds")
      ax.fill_between(steps, mean - std, mean + std, color=colors[label], alpha=0.2, lw=0)
    ax.set_title(dataset, fontsize=9)
    ax.set_xlabel("gradient steps", fontsize=8)
    ax.set_ylabel(metric.split("/")[-1].replace("_", " "), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_steps_label))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)
  for ax in list(axes.flat)[len(curves):]:
    ax.axis("off")
  fig.suptitle(f"{metric}: mean ± std over seeds", fontsize=10)
  return save_figure(fig, out_path, dpi=120)


def save_figure(fig, out_path, dpi: int) -> pathlib.Path:
  """Lays out `fig`, writes it to `out_path` (making its folder) and closes it, so a script
  that draws many figures does not keep them all in memory."""
  import matplotlib.pyplot as plt
  fig.tight_layout()
  out_path = pathlib.Path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out_path, dpi=dpi)
  plt.close(fig)
  return out_path


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


def plot_interval_estimates(summary: Dict[str, dict], out_path) -> pathlib.Path:
  """One panel per aggregate metric; one row per label: the point and its 95% interval."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  labels = list(summary)
  colors = [plt.get_cmap("tab10")(i % 10) for i in range(len(labels))]
  height = 1.2 + 0.45 * len(labels)
  fig, axes = plt.subplots(1, len(AGGREGATE_METRICS), figsize=(3.6 * len(AGGREGATE_METRICS),
                                                                height), sharey=True)
  y = np.arange(len(labels))[::-1]
  for ax, name in zip(axes, AGGREGATE_METRICS):
    for row, label, color in zip(y, labels, colors):
      point = summary[label][name]["point"]
      lo, hi = summary[label][name]["ci95"]
      ax.hlines(row, lo, hi, color=color, lw=6, alpha=0.45)
      ax.plot([point], [row], "|", color="black", ms=14, mew=1.5)
    ax.set_title(name, fontsize=10)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.margins(x=0.15)
  fig.supxlabel("normalized score / 100 (95% stratified-bootstrap intervals)", fontsize=9)
  fig.tight_layout()
  out_path = pathlib.Path(out_path)
  fig.savefig(out_path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return out_path


def aggregate(groups: Dict[str, Sequence], out_dir, metric: str = DEFAULT_METRIC,
              reps: int = 2000, seed: int = 0) -> Dict[str, dict]:
  """IQM, mean and optimality gap with 95% stratified-bootstrap CIs per label.

  Writes aggregate.json and aggregate.png under out_dir and returns the numbers.
  """
  from rliable import library as rly
  from rliable import metrics as rly_metrics

  scores = {label: final_scores(dirs, metric) for label, dirs in groups.items()}
  aggregate_fn = lambda x: np.array([rly_metrics.aggregate_iqm(x), rly_metrics.aggregate_mean(x),
                                     rly_metrics.aggregate_optimality_gap(x)])
  np.random.seed(seed)  # rliable's bootstrap draws from NumPy's global generator.
  points, intervals = rly.get_interval_estimates(scores, aggregate_fn, reps=reps)
  summary = {label: {name: {"point": float(points[label][i]),
                            "ci95": [float(intervals[label][0, i]), float(intervals[label][1, i])]}
                     for i, name in enumerate(AGGREGATE_METRICS)}
             | {"matrix_shape": list(scores[label].shape)}
             for label in groups}
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  writers.atomic_write_json(out_dir / "aggregate.json", summary)
  plot_interval_estimates(summary, out_dir / "aggregate.png")
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
    ax.set_title(dataset_name(workdir), fontsize=9)
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
  """["CQL=runs/a*", "runs/b"] -> {"CQL": [...], "runs/b": [...]} (globs expanded, sorted)."""
  groups: Dict[str, List[str]] = {}
  for spec in specs:
    label, sep, pattern = spec.partition("=")
    if not sep:
      label, pattern = spec, spec
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
  print(f"wrote {plot_curves(groups, out / 'curves.png', FLAGS.metric)}")
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
