"""Table 4 of the CQL paper on Pendulum: predicted policy value against the true value.

For each method and dataset, trains S seeds (vmapped) through cql_jax.runner (one run directory
per <kind>/<method> under --workdir, like any experiments.train run), then for each seed compares
  predicted  E_{s~D0}[V̂(s)],  V̂(s) = E_{a~π(·|s)}[min_E Q(s, a)]  (M policy samples; the min over
             the E critics is the value the actor maximises and, for Ensemble(E), the paper's
             "minimum predicted Q-value under an ensemble"),
  true       the γ-discounted return of the same stochastic policy, rolled out in Pendulum-v1 from
             each of the dataset's initial states (D0) for `horizon` steps.
The critic bootstraps through the 200-step time limit (discount 1 at truncations), so it estimates
the infinite-horizon value; rollouts therefore run `horizon` = 1000 steps (γ^1000 ≈ 4e-5) rather
than the 200 of an episode. Backups are deterministic (no entropy bonus) so Q is in reward units.
A rerun reuses finished runs (their final state comes from the last checkpoint).

  PYTHONPATH=$PWD python -m experiments.table4 --num_steps=5000 --num_seeds=2 --write_results
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import dataclasses
import json
import pathlib

import numpy as np

# JAX, Gymnasium and the JAX-heavy cql_jax modules are imported where used: --help is quick.
from cql_jax.makers import pendulum
from experiments import budget as budget_lib
from experiments import results_md

HEADING = "## Table 4: value over/under-estimation"
LABELS = {"cql_h": "CQL(H)", "cql_eq1": "CQL (Eq. 1)", "cql_rho": "CQL(ρ)"}


@dataclasses.dataclass(frozen=True)
class ValueSettings:
  """gamma, polyak: the critic's; value_samples: M; horizon: rollout length of the true return."""
  gamma: float = 0.99
  polyak: float = 5e-3
  value_samples: int = 100
  horizon: int = 1000


def label(name: str) -> str:
  if name.startswith("ensemble_"):
    return f"Ensemble({name.split('_')[1]})"
  return LABELS.get(name, name)


def true_discounted_returns(act, initial_obs: np.ndarray, gamma: float, horizon: int, key
                            ) -> np.ndarray:
  """γ-discounted return of `act` from each initial observation, one rollout each.

  act(obs [K, 3], key) -> actions [K, 1] in env units. initial_obs: [K, 3]. Returns [K].
  The envs are unwrapped (no time limit) so episodes run the full `horizon`.
  """
  import gymnasium as gym
  import jax
  from cql_jax.envs.pendulum import set_pendulum_state
  envs = [gym.make(pendulum.ENV_ID).unwrapped for _ in initial_obs]
  for i, (env, obs) in enumerate(zip(envs, initial_obs)):
    env.reset(seed=i)
    set_pendulum_state(env, obs)
  obs = np.array(initial_obs, np.float32)  # a copy: the caller's states must stay as they are.
  returns = np.zeros(len(envs))
  for t in range(horizon):
    key, act_key = jax.random.split(key)
    actions = np.asarray(act(obs, act_key))
    for i, env in enumerate(envs):
      o, r, _, _, _ = env.step(actions[i])
      obs[i] = o
      returns[i] += gamma ** t * r
  for env in envs:
    env.close()
  return returns


def make_predicted_value(config, action_dim: int, value_samples: int):
  """Returns v(state, obs [K, O], key) -> [K]: E_{a~π}[min_E Q(s, a)] from M samples."""
  import jax
  import jax.numpy as jnp
  from cql_jax.continuous import networks
  actor = networks.TanhGaussianActor(action_dim, tuple(config.actor_hidden_sizes),
                                     config.log_std_min, config.log_std_max)
  critic = networks.CriticEnsemble(int(config.num_critics), tuple(config.critic_hidden_sizes))

  @jax.jit
  def value(state, obs, key):
    mean, log_std = actor.apply(state.actor_params, obs)
    actions, _ = networks.sample_tanh_gaussian(mean, log_std, key, value_samples)
    q = critic.apply(state.critic_params, obs, actions)          # [E, K, M]
    return jnp.mean(jnp.min(q, axis=0), axis=-1)
  return value


def run_config(kind: str, name: str, budget: budget_lib.Budget, settings: ValueSettings):
  from cql_jax.configs import classic
  from cql_jax.continuous import variants
  agent = budget_lib.agent_config(budget)
  agent.gamma = settings.gamma
  agent.polyak = settings.polyak
  agent.backup_entropy = False  # Q in reward units, comparable with the discounted return.
  agent = variants.variant_config(name, agent)
  return budget_lib.run_config(classic.get_config(kind), agent, budget)


def run_one(kind: str, name: str, budget: budget_lib.Budget, settings: ValueSettings, workdir,
            key):
  """(predicted [S], true [S], seconds of training, the run's config) for one method."""
  import jax
  import jax.numpy as jnp
  from cql_jax import agents, runner
  from cql_jax.evaluation import seed_state
  config = run_config(kind, name, budget, settings)
  result = budget_lib.train(config, pathlib.Path(workdir) / kind / name, budget.seeds)
  dataset = runner.load_data(config)
  agent = agents.make_agent(config.agent, dataset)
  value = make_predicted_value(config.agent, dataset.action_dim, settings.value_samples)
  act = jax.jit(agent.act, static_argnums=3)
  predicted, true = [], []
  for s in range(budget.num_seeds):
    state = seed_state(result.state, s)
    value_key, rollout_key = jax.random.split(jax.random.fold_in(key, s))
    predicted.append(float(np.mean(value(state, jnp.asarray(dataset.initial_obs), value_key))))
    true.append(float(np.mean(true_discounted_returns(
        lambda o, k, st=state: act(st, o, k, False), dataset.initial_obs, config.agent.gamma,
        settings.horizon, rollout_key))))
  return np.array(predicted), np.array(true), result.results.get("train_seconds", 0.0), config


def fmt(x: np.ndarray) -> str:
  return f"{x.mean():.1f} ± {x.std():.1f}" if len(x) > 1 else f"{x.mean():.1f}"


def run(kinds, methods, budget: budget_lib.Budget, settings: ValueSettings, workdir, log=print):
  """{(method, kind): (predicted [S], true [S])} and {label: run config} of the methods."""
  import jax
  root = jax.random.key(budget.seed + 1)
  results, configs = {}, {}
  for d, kind in enumerate(kinds):
    for m, name in enumerate(methods):
      pred, true, secs, config = run_one(kind, name, budget, settings, workdir,
                                         jax.random.fold_in(root, 100 * d + m))
      results[(name, kind)] = (pred, true)
      configs[label(name)] = json.loads(config.to_json_best_effort())
      log(f"{kind:14s} {label(name):12s} predicted {fmt(pred):>16s} true {fmt(true):>16s} "
          f"diff {fmt(pred - true):>16s}  ({secs:.0f} s of training)")
  return results, configs


def table(kinds, methods, results) -> str:
  header = "| method | " + " | ".join(f"{k}: predicted − true" for k in kinds) + " | " + \
      " | ".join(f"{k}: predicted / true" for k in kinds) + " |"
  rows = [header, "|---|" + "---:|" * (2 * len(kinds))]
  for name in methods:
    diffs = [fmt(results[(name, k)][0] - results[(name, k)][1]) for k in kinds]
    both = [f"{results[(name, k)][0].mean():.1f} / {results[(name, k)][1].mean():.1f}"
            for k in kinds]
    rows.append(f"| {label(name)} | " + " | ".join(diffs + both) + " |")
  return "\n".join(rows)


def results_body(kinds, methods, results, configs, budget: budget_lib.Budget,
                 settings: ValueSettings, workdir) -> str:
  return f"""Command:

    PYTHONPATH=$PWD python -m experiments.table4 --datasets={','.join(kinds)} \\
      --methods={','.join(methods)} --num_steps={budget.num_steps} \\
      --steps_per_chunk={budget.steps_per_chunk} --num_seeds={budget.num_seeds} --seed={budget.seed} \\
      --gamma={settings.gamma} --polyak={settings.polyak} --horizon={settings.horizon} \\
      --workdir={workdir} --write_results

{results_md.describe_setup(configs, budget.seeds)}

Predicted = E_{{s~D0}}[E_{{a~π}}[min_E Q(s, a)]] ({settings.value_samples} policy samples per
state, D0 = the dataset's initial states); true = the γ-discounted return of the same stochastic
policy rolled out from those states in Pendulum-v1 (state set from the observation) for
{settings.horizon} steps, since the critic bootstraps through the 200-step time limit and so
estimates the infinite-horizon value. Entries are mean ± std over seeds of predicted − true; the
last columns give the seed-mean predicted / true values (rewards ≤ 0, so values are negative).

{table(kinds, methods, results)}
"""


def main(argv):
  del argv
  from absl import flags
  from cql_jax import logs
  FLAGS = flags.FLAGS
  logs.quiet(FLAGS.library_logs)
  budget = budget_lib.from_flags(FLAGS)
  settings = ValueSettings(FLAGS.gamma, FLAGS.polyak, FLAGS.value_samples, FLAGS.horizon)
  results, configs = run(FLAGS.datasets, FLAGS.methods, budget, settings, FLAGS.workdir)
  print(table(FLAGS.datasets, FLAGS.methods, results))
  if FLAGS.write_results:
    results_md.write_section(FLAGS.results, HEADING, results_body(
        FLAGS.datasets, FLAGS.methods, results, configs, budget, settings, FLAGS.workdir))


def define_flags() -> None:
  from absl import flags
  flags.DEFINE_list("datasets", ["medium-replay", "medium-expert"], "Pendulum dataset kinds.")
  flags.DEFINE_list("methods", ["cql_h", "cql_eq1", "ensemble_2", "ensemble_4", "ensemble_10",
                                "ensemble_20"], "variants.variant_config names.")
  flags.DEFINE_string("workdir", "runs/table4", "Root of the runs, one per <kind>/<method>.")
  budget_lib.define_flags(num_steps=5000, num_seeds=2, eval_every=None)
  flags.DEFINE_float("gamma", 0.99, "Discount of the critic and of the true return.")
  flags.DEFINE_float("polyak", 5e-3, "Target-critic Polyak rate.")
  flags.DEFINE_integer("value_samples", 100, "Policy samples M per initial state for V̂.")
  flags.DEFINE_integer("horizon", 1000, "Rollout length for the true discounted return.")


if __name__ == "__main__":
  from absl import app
  define_flags()
  app.run(main)
