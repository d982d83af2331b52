"""Tabular CQL on random finite MDPs: the Section 3 bounds, measured.

For each of `num_mdps` random MDPs (random behaviour policy pi_beta, random target policy pi,
mu = pi) and each dataset size |D|, draws a dataset, builds the counts-based empirical operator and
reports:
  * Theorem 3.1 (Eq. 1): the realised threshold alpha* (smallest alpha with Q^-hat <= Q^pi on D),
    the theorem's threshold computed from the realised sampling error, and the point-wise margin
    min_{s in D, a} (Q^pi - Q^-hat) at the theorem's alpha (>= 0 means the bound holds);
  * Theorem 3.2 (Eq. 2): the same for V, with margin min_{s in D} (V^pi - V^-hat);
  * Eq. 2 is not point-wise: max (Q^-hat - Q^pi) with the exact operator, alpha = 1, and
    pi = 0.99 pi_beta + 0.01 pi (> 0 means some Q-value is over-estimated);
  * Theorem 3.4: how often CQL(H) steps expand the gap, measured against pi^_beta and against
    pi_beta.
Writes a PNG of V^-hat - V^pi against alpha and against |D|.

  python -m experiments.tabular   # writes runs/tabular/tabular_bounds.png
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import os
import time

from absl import app, flags
import numpy as np

from cql_jax import tabular as T

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_mdps", 50, "Random MDPs per setting.")
flags.DEFINE_integer("num_states", 10, "|S|.")
flags.DEFINE_integer("num_actions", 3, "|A|.")
flags.DEFINE_float("gamma", 0.9, "Discount.")
flags.DEFINE_float("reward_max", 1.0, "R_max.")
flags.DEFINE_integer("branching", 4, "Successor states per (s, a).")
flags.DEFINE_float("behaviour_mix", 0.2,
                   "pi_beta = (1 - mix) Dirichlet(1) + mix uniform. Keeps pi_beta away from 0: "
                   "with "
                   "near-zero pi_beta(a|s) the penalty mu/pi^_beta grows with |D| as the data "
                   "reveals how rare a is, which swamps the sampling-error effect being plotted.")
flags.DEFINE_list("sizes", ["100", "300", "1000", "3000", "10000", "30000", "100000"],
                  "Dataset sizes |D| (i.i.d. transitions before coverage seeds).")
flags.DEFINE_integer("alpha_sweep_size", 1000, "|D| for the V^-hat - V against alpha sweep.")
flags.DEFINE_float("fixed_alpha", 0.05, "alpha for the V^-hat - V against |D| panel.")
flags.DEFINE_integer("cql_h_iters", 30, "CQL(H) steps per MDP for the gap-expansion count.")
flags.DEFINE_integer("seed", 0, "Base seed; MDP i uses seed + i.")
flags.DEFINE_string("out_dir", "runs/tabular", "Where the PNG goes.")


def _problem(seed: int):
  rng = np.random.default_rng(seed)
  s, a = FLAGS.num_states, FLAGS.num_actions
  mdp = T.random_mdp(rng, s, a, FLAGS.gamma, FLAGS.reward_max, FLAGS.branching)
  beta = (1 - FLAGS.behaviour_mix) * T.random_policy(rng, s, a) + FLAGS.behaviour_mix / a
  return rng, mdp, beta, T.random_policy(rng, s, a)


def _emp(rng, mdp, beta, n):
  data = T.sample_dataset(rng, mdp, beta, n)
  return T.empirical_mdp(data, mdp.num_states, mdp.num_actions, mdp.gamma)


def _value_gap(emp, mdp, pi, alpha, variant):
  """[S] V^-hat - V^pi on D (NaN off D)."""
  q_hat = T.cql_evaluation(emp, pi, pi, alpha, variant)
  diff = T.state_values(q_hat, pi) - T.state_values(T.true_q(mdp, pi), pi)
  return np.where(emp.in_data, diff, np.nan)


def _measure_sizes(sizes):
  """Per (MDP, size): thresholds and margins. Returns dict of [num_mdps, len(sizes)] arrays."""
  keys = ("a31_exact", "a31_thm", "a31_paper", "m31", "a32_exact", "a32_thm", "m32",
          "dv0", "dv1", "dv2", "dv1_exact", "dv2_exact")
  out = {k: np.zeros((FLAGS.num_mdps, len(sizes))) for k in keys}
  for i in range(FLAGS.num_mdps):
    for j, n in enumerate(sizes):
      rng, mdp, beta, pi = _problem(FLAGS.seed + i)
      emp = _emp(rng, mdp, beta, n)
      d = emp.in_data
      q_pi = T.true_q(mdp, pi)
      t1 = T.theorem_3_1(mdp, emp, pi, pi)
      q1 = T.cql_evaluation(emp, pi, pi, t1.alpha_threshold, T.EQ1)
      t2 = T.theorem_3_2(mdp, emp, pi)
      v2 = _value_gap(emp, mdp, pi, t2.alpha_threshold, T.EQ2)
      out["a31_exact"][i, j], out["a31_thm"][i, j] = t1.alpha_exact, t1.alpha_threshold
      out["a31_paper"][i, j] = t1.alpha_paper_form
      out["m31"][i, j] = np.min((q_pi - q1)[d])
      out["a32_exact"][i, j], out["a32_thm"][i, j] = t2.alpha_exact, t2.alpha_threshold
      out["m32"][i, j] = np.nanmin(-v2)
      out["dv0"][i, j] = np.nanmean(_value_gap(emp, mdp, pi, 0.0, T.EQ1))
      out["dv1"][i, j] = np.nanmean(_value_gap(emp, mdp, pi, FLAGS.fixed_alpha, T.EQ1))
      out["dv2"][i, j] = np.nanmean(_value_gap(emp, mdp, pi, FLAGS.fixed_alpha, T.EQ2))
      exact = T.exact_operator(mdp, beta)
      out["dv1_exact"][i, j] = np.mean(_value_gap(exact, mdp, pi, FLAGS.fixed_alpha, T.EQ1))
      out["dv2_exact"][i, j] = np.mean(_value_gap(exact, mdp, pi, FLAGS.fixed_alpha, T.EQ2))
  return out


def _measure_alphas(alphas):
  """[num_mdps, len(alphas)] mean_{s in D} (V^-hat - V^pi) for Eq. 1 and Eq. 2."""
  dv = {T.EQ1: np.zeros((FLAGS.num_mdps, len(alphas))), T.EQ2: np.zeros((FLAGS.num_mdps,
                                                                          len(alphas)))}
  for i in range(FLAGS.num_mdps):
    rng, mdp, beta, pi = _problem(FLAGS.seed + i)
    emp = _emp(rng, mdp, beta, FLAGS.alpha_sweep_size)
    for variant in dv:
      for j, alpha in enumerate(alphas):
        dv[variant][i, j] = np.nanmean(_value_gap(emp, mdp, pi, alpha, variant))
  return dv


def _pointwise_and_gap():
  """Eq. 2 point-wise overshoot per MDP, and gap-expansion fractions over CQL(H) steps."""
  overshoot = np.zeros(FLAGS.num_mdps)
  expand_hat = expand_true = total = 0
  for i in range(FLAGS.num_mdps):
    rng, mdp, beta, pi = _problem(FLAGS.seed + i)
    near = 0.99 * beta + 0.01 * pi
    exact = T.exact_operator(mdp, beta)
    overshoot[i] = np.max(T.cql_evaluation(exact, near, near, 1.0, T.EQ2) - T.true_q(mdp, near))
    emp = _emp(rng, mdp, beta, FLAGS.alpha_sweep_size)
    q = np.zeros_like(emp.reward)
    for _ in range(FLAGS.cql_h_iters):
      step = T.cql_h_step(emp, q, 1.0, exact_argmin=True)
      d = emp.in_data
      expand_hat += np.sum(T.gap_expansion(emp, step.q, step.plain, step.mu)[d] > 0)
      expand_true += np.sum(T.gap_expansion(emp, step.q, step.plain, step.mu, beta)[d] > 0)
      total += d.sum()
      q = step.q
  return overshoot, expand_hat / total, expand_true / total


def _plot(path, alphas, dv_alpha, sizes, by_size):
  import matplotlib  # local: --help and the measurements need no plotting library.
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  ax = axes[0]
  for variant, label in ((T.EQ1, "Eq. 1"), (T.EQ2, "Eq. 2 (mu = pi)")):
    mean = dv_alpha[variant].mean(0)
    lo, hi = np.percentile(dv_alpha[variant], [10, 90], axis=0)
    ax.plot(alphas, mean, marker="o", ms=3, label=label)
    ax.fill_between(alphas, lo, hi, alpha=0.2)
  ax.axhline(0, color="k", lw=0.8)
  ax.set_xscale("log")
  ax.set_yscale("symlog", linthresh=0.01)
  ax.set_xlabel("alpha")
  ax.set_ylabel("mean over s in D of V^-hat - V^pi")
  ax.set_title(f"|D| = {FLAGS.alpha_sweep_size}: V^-hat - V against alpha")
  ax.legend()
  ax = axes[1]
  for key, label in (("dv0", "alpha = 0"), ("dv1", f"Eq. 1, alpha = {FLAGS.fixed_alpha}"),
                     ("dv2", f"Eq. 2, alpha = {FLAGS.fixed_alpha}")):
    mean = by_size[key].mean(0)
    lo, hi = np.percentile(by_size[key], [10, 90], axis=0)
    ax.plot(sizes, mean, marker="o", ms=3, label=label)
    ax.fill_between(sizes, lo, hi, alpha=0.2)
  for key, color in (("dv1_exact", "C1"), ("dv2_exact", "C2")):
    ax.axhline(by_size[key].mean(), color=color, ls="--", lw=1)
  ax.plot([], [], "k--", lw=1, label="exact operator (|D| = inf)")
  ax.axhline(0, color="k", lw=0.8)
  ax.set_xscale("log")
  ax.set_xlabel("|D|")
  ax.set_ylabel("mean over s in D of V^-hat - V^pi")
  ax.set_title("V^-hat - V against |D| (10-90% band over MDPs)")
  ax.legend()
  ax = axes[2]
  for key, label in (("a31_thm", "Thm 3.1 threshold"), ("a31_exact", "Eq. 1 realised alpha*"),
                     ("a32_thm", "Thm 3.2 threshold"), ("a32_exact", "Eq. 2 realised alpha*")):
    ax.plot(sizes, np.median(by_size[key], 0), marker="o", ms=3, label=label)
  ax.plot(sizes, np.median(by_size["a31_thm"][:, 0]) * np.sqrt(sizes[0] / np.asarray(sizes)),
          "k:", label="1/sqrt|D|")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel("|D|")
  ax.set_ylabel("median alpha over MDPs")
  ax.set_title("alpha needed for a lower bound")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  start = time.time()
  sizes = [int(x) for x in FLAGS.sizes]
  alphas = np.logspace(-3, 2, 21)
  by_size = _measure_sizes(sizes)
  dv_alpha = _measure_alphas(alphas)
  overshoot, frac_hat, frac_true = _pointwise_and_gap()

  print(f"{FLAGS.num_mdps} random MDPs, |S|={FLAGS.num_states}, |A|={FLAGS.num_actions}, "
        f"gamma={FLAGS.gamma}, R_max={FLAGS.reward_max}, branching={FLAGS.branching}, "
        f"behaviour_mix={FLAGS.behaviour_mix}")
  print("Medians over MDPs; margins are minima over MDPs (>= 0: the bound held on every MDP).")
  header = (f"{'|D|':>7} | {'a*_Eq1':>8} {'a_Thm3.1':>9} {'a_paper':>8} {'min margin Q':>12} | "
            f"{'a*_Eq2':>8} {'a_Thm3.2':>9} {'min margin V':>12} | {'paper<a*':>8}")
  print(header)
  print("-" * len(header))
  for j, n in enumerate(sizes):
    med = {k: np.median(v[:, j]) for k, v in by_size.items()}
    bad = np.mean(by_size["a31_paper"][:, j] < by_size["a31_exact"][:, j])
    print(f"{n:>7} | {med['a31_exact']:8.4f} {med['a31_thm']:9.3f} {med['a31_paper']:8.3f} "
          f"{by_size['m31'][:, j].min():12.4f} | {med['a32_exact']:8.4f} {med['a32_thm']:9.2f} "
          f"{by_size['m32'][:, j].min():12.4f} | {bad:8.2f}")
  print(f"Eq. 2 not point-wise (exact operator, alpha=1, pi = 0.99 pi_beta + 0.01 pi'): "
        f"max_(s,a) Q^-hat - Q^pi > 0 on {np.mean(overshoot > 0):.0%} of MDPs "
        f"(median {np.median(overshoot):.2e}, max {overshoot.max():.2e})")
  print(f"Theorem 3.4, CQL(H) alpha=1, |D|={FLAGS.alpha_sweep_size}, {FLAGS.cql_h_iters} steps: "
        f"gap expands at {frac_hat:.1%} of (state, step) pairs measured with pi^_beta, "
        f"{frac_true:.1%} with the true pi_beta")
  print(f"Mean V^-hat - V at alpha={FLAGS.fixed_alpha} by |D| (Eq. 1 / Eq. 2): "
        + ", ".join(f"{n}: {by_size['dv1'][:, j].mean():.3f}/{by_size['dv2'][:, j].mean():.3f}"
                    for j, n in enumerate(sizes))
        + f"; exact operator: {by_size['dv1_exact'].mean():.3f}/{by_size['dv2_exact'].mean():.3f}")
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  path = os.path.join(FLAGS.out_dir, "tabular_bounds.png")
  _plot(path, alphas, dv_alpha, sizes, by_size)
  print(f"wrote {path}; {time.time() - start:.1f} s")


if __name__ == "__main__":
  app.run(main)
