"""How well does each offline estimator choose? Trains small sweeps, selects offline, then scores
each choice with the online evaluations the selector never read.

  PYTHONPATH=$PWD MINARI_DATASETS_PATH=$PWD/data/minari python -m experiments.selection_study \
      --studies=pendulum-mr,cartpole-me --workdirs=runs/selection --out=results/selection.json

For each study it trains one sweep (runner.train_and_evaluate; resumable), saving a checkpoint at
every evaluation, runs cql_jax.selection.select_run on it, and joins the estimates with the true
normalized score of every (member, checkpoint) from metrics.jsonl's "eval" rows. Per estimator:
  spearman          rank correlation of estimate and true score over all candidates;
  spearman_within   the same within each member (over its checkpoints), averaged;
  regret            best true score of any candidate minus that of the estimator's choice;
  regret_vs_last    the true score of the last checkpoint of the member that is best at the end
                    (the usual practice: tune online, report the last checkpoint) minus the
                    choice's (negative: the offline choice beat it);
  checkpoint_gain   per member, the true score of the checkpoint the estimator picks within that
                    member minus that of its last checkpoint, averaged (positive: early stopping
                    by this estimator helped).
All in normalized-score points. Writes --out (JSON, one entry per study) and prints tables.
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import importlib
import json
import pathlib
import sys

from absl import app
from absl import flags
import numpy as np

# JAX-heavy modules (runner, selection, sweep, configs) are imported where used, so --help is quick.
from cql_jax import logs
from cql_jax import writers

FLAGS = flags.FLAGS


def _domain_config(domain: str, variant: str):
  """A function making cql_jax/configs/<domain>.py's config for `variant` (imported on use)."""
  return lambda: importlib.import_module(f"cql_jax.configs.{domain}").get_config(variant)


# name -> (config, overrides, sweep grid, seeds, FQE critic overrides).
STUDIES = {
    "pendulum-mr": (_domain_config("classic", "medium-replay"),
                    {"num_steps": 10_000, "eval_every": 2_000, "checkpoint_every": 2_000,
                     "keep_checkpoints": 100, "eval_episodes": 10},
                    {"agent.cql.weight": (0.0, 1.0, 5.0)}, (0, 1), {"polyak": 0.02}),
    "pendulum-expert": (_domain_config("classic", "expert"),
                        {"num_steps": 10_000, "eval_every": 2_000, "checkpoint_every": 2_000,
                         "keep_checkpoints": 100, "eval_episodes": 10},
                        {"agent.cql.weight": (1.0, 5.0, 20.0)}, (0, 1), {"polyak": 0.02}),
    "cartpole-me": (_domain_config("cartpole", "medium-expert"),
                    {"num_steps": 25_000, "eval_every": 5_000, "checkpoint_every": 5_000,
                     "keep_checkpoints": 100, "eval_episodes": 10},
                    {"agent.cql.weight": (0.0, 0.1, 1.0)}, (0, 1), {"target_update_period": 100}),
}


def define_flags() -> None:
  """The flags; defined only when run as a script, so importing this module defines none."""
  flags.DEFINE_list("studies", ["pendulum-mr", "cartpole-me"], "Which studies (STUDIES) to run.")
  flags.DEFINE_string("workdirs", "runs/selection", "Parent of the sweeps' workdirs.")
  flags.DEFINE_string("out", "results/selection.json", "Where the study's numbers go.")
  flags.DEFINE_bool("library_logs", False, logs.FLAG_HELP)
  flags.DEFINE_integer("fqe_steps", 10_000, "Gradient steps of each FQE / conservative critic.")
  flags.DEFINE_bool("reuse_selection", False, "Reuse the FQE / conservative estimates of a sweep's "
                    "selection.json made with the same settings (no critics retrained).")
  flags.DEFINE_string("plot", "results/selection.png", "Scatter of estimate against true score, "
                      "one row per study in --out (empty: no plot).")


def true_scores(workdir: pathlib.Path, candidates) -> np.ndarray:
  """[C] mean normalized score (over episodes) of each candidate, from the run's eval rows."""
  from cql_jax import runner
  evals = {r["step"]: r for r in writers.read_jsonl(workdir / writers.METRICS_FILE)
           if r["kind"] == "eval"}
  names = json.loads((workdir / runner.RESULTS_FILE).read_text())
  members = [m["name"] for m in names["members"]] if "members" in names else [
      f"seed_{s}" for s in names["seeds"]]
  key = "eval/normalized_score"
  return np.asarray([evals[c["step"]][key][members.index(c["member"])] for c in candidates])


def score_estimators(selected: dict, truth: np.ndarray) -> dict:
  """The study's numbers per estimator (see the module docstring)."""
  from scipy import stats
  cands = selected["candidates"]
  members = sorted({c["member"] for c in cands}, key=[c["member"] for c in cands].index)
  steps = sorted({c["step"] for c in cands})
  index = {(c["member"], c["step"]): i for i, c in enumerate(cands)}
  last = {m: truth[index[(m, steps[-1])]] for m in members}
  best_at_end = max(members, key=lambda m: last[m])
  out = {"best": float(truth.max()), "last_of_best_member": float(last[best_at_end]),
         "mean_last": float(np.mean(list(last.values()))), "estimators": {}}
  for name, estimates in selected["estimates"].items():
    est = np.asarray(estimates, np.float64)
    # A diverged estimate (selection.VALID_FACTOR) is never chosen: rank it last.
    ok = np.asarray(selected.get("valid", {}).get(name, np.ones(len(est), bool)))
    est = np.where(ok, est, -np.inf)
    choice = selected["choice"][name]
    chosen = truth[index[(choice["member"], choice["step"])]]
    within, gains = [], []
    for m in members:
      idx = [index[(m, s)] for s in steps]
      if len(idx) > 2 and np.ptp(truth[idx]) > 0 and np.ptp(est[idx]) > 0:
        within.append(stats.spearmanr(est[idx], truth[idx]).statistic)
      if name == "workflow":
        pick = index[(m, selected["diagnosis"][m]["checkpoint"])]
      elif np.isfinite(est[idx]).any():
        pick = idx[int(np.argmax(est[idx]))]
      else:  # every estimate of this member diverged: nothing to choose, keep the last.
        pick = idx[-1]
      gains.append(truth[pick] - last[m])
    out["estimators"][name] = {
        "spearman": float(stats.spearmanr(est, truth).statistic),
        "spearman_within": float(np.mean(within)) if within else float("nan"),
        "choice": {**choice, "true_score": float(chosen)},
        "regret": float(truth.max() - chosen),
        "regret_vs_last": float(last[best_at_end] - chosen),
        "checkpoint_gain": float(np.mean(gains)), "diverged": int((~ok).sum())}
  return out


def table(name: str, result: dict) -> str:
  rows = [f"{name}: best candidate {result['best']:.1f}; last checkpoint of the best member at "
          f"the end {result['last_of_best_member']:.1f}; mean last checkpoint {result['mean_last']:.1f}",
          "| estimator | Spearman (all) | Spearman (within member) | choice | its score | regret "
          "vs best | vs last of best member | checkpoint gain vs last | diverged |",
          "|---|---|---|---|---|---|---|---|---|"]
  for est, r in result["estimators"].items():
    c = r["choice"]
    rows.append(f"| {est} | {r['spearman']:.2f} | {r['spearman_within']:.2f} | {c['member']} @ "
                f"{c['step']} | {c['true_score']:.1f} | {r['regret']:.1f} | "
                f"{r['regret_vs_last']:.1f} | {r['checkpoint_gain']:+.1f} | "
                f"{r.get('diverged', 0)} |")
  return "\n".join(rows)


def plot(results: dict, path: str) -> None:
  """One row per study, one panel per estimator: estimate against true score, coloured by
  checkpoint step, the choice ringed."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from cql_jax import selection
  names = list(results)
  estimators = list(selection.ESTIMATORS)
  fig, axes = plt.subplots(len(names), len(estimators), figsize=(3.2 * len(estimators),
                                                                 2.8 * len(names)), squeeze=False)
  for row, name in zip(axes, names):
    r = results[name]
    truth = np.asarray(r["true_scores"])
    steps = np.asarray([c["step"] for c in r["candidates"]])
    for ax, est in zip(row, estimators):
      values = np.asarray(r["estimates"][est], np.float64)
      ok = np.asarray(r.get("valid", {}).get(est, np.ones(len(values), bool)))
      values, truth_ok, steps_ok = values[ok], truth[ok], steps[ok]
      ax.scatter(values, truth_ok, c=steps_ok, cmap="viridis", s=14)
      choice = r["estimators"][est]["choice"]
      ax.scatter([choice["estimate"]], [choice["true_score"]], s=90, facecolors="none",
                 edgecolors="red")
      dropped = f", {int((~ok).sum())} diverged" if not ok.all() else ""
      low = r.get("value_range", [None])[0]
      if low is not None and len(values) and values.min() < low:
        # Conservative estimates may sit far below every return; keep the axis readable.
        off = int((values < low).sum())
        right = max(values.max(), low + 1.0)
        pad = 0.05 * (right - low)
        ax.set_xlim(left=low - pad, right=right + pad)
        ax.scatter(np.full(off, low), truth_ok[values < low], marker="<", c="grey", s=14)
        dropped += f", {off} off-axis"
      ax.set_title(f"{name}: {est} (ρ={r['estimators'][est]['spearman']:.2f}{dropped})",
                   fontsize=8)
      ax.set_xlabel("offline estimate", fontsize=7)
      ax.set_ylabel("true normalized score", fontsize=7)
      ax.tick_params(labelsize=6)
  fig.text(0.5, 0.002, "colour: checkpoint step (dark = early, yellow = late); red ring: the "
           "estimator's choice; grey <: estimates below the lowest possible return, drawn at the "
           "axis edge", ha="center", fontsize=7)
  fig.tight_layout(rect=(0, 0.015, 1, 1))
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(path).with_suffix(".tmp.png")
  fig.savefig(tmp, dpi=110)
  tmp.replace(path)


def run_study(name: str) -> dict:
  from cql_jax import runner, selection, sweep
  from cql_jax.configs import base
  make, overrides, grid, seeds, fqe = STUDIES[name]
  config = base.override(make(), overrides)
  workdir = pathlib.Path(FLAGS.workdirs) / name
  runner.train_and_evaluate(config, workdir, seeds, resume=True, progress=False,
                            grid=sweep.Grid.from_dict(grid))
  selected = selection.select_run(workdir, fqe_steps=FLAGS.fqe_steps, fqe_overrides=fqe,
                                  reuse=FLAGS.reuse_selection)
  truth = true_scores(workdir, selected["candidates"])
  result = score_estimators(selected, truth)
  result.update(command=f"python -m experiments.selection_study --studies={name} "
                f"--fqe_steps={FLAGS.fqe_steps}", dataset=config.dataset_id, seeds=list(seeds),
                grid={k: list(v) for k, v in grid.items()}, overrides=overrides, fqe=fqe,
                fqe_steps=FLAGS.fqe_steps, true_scores=truth.tolist(),
                candidates=selected["candidates"], estimates=selected["estimates"],
                valid=selected.get("valid", {}), value_range=selected.get("value_range"))
  return result


def main(argv):
  del argv
  logs.quiet(FLAGS.library_logs)
  unknown = [s for s in FLAGS.studies if s not in STUDIES]
  if unknown:
    print(f"error: unknown studies {unknown}; choose from {sorted(STUDIES)}", file=sys.stderr)
    return 1
  out = pathlib.Path(FLAGS.out)
  results = json.loads(out.read_text()) if out.exists() else {}
  for name in FLAGS.studies:
    results[name] = run_study(name)
    writers.atomic_write_json(out, results)  # after each study: a stop loses nothing finished.
    print(table(name, results[name]), flush=True)
  if FLAGS.plot:
    plot(results, FLAGS.plot)
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
