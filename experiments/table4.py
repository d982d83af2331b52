"""Table 4 of the CQL paper on Pendulum: predicted policy value against the true value.

For each method and dataset, trains S seeds (vmapped), then for each seed compares
  predicted  E_{s~D0}[V̂(s)],  V̂(s) = E_{a~π(·|s)}[min_E Q(s, a)]  (M policy samples; the min over
             the E critics is the value the actor maximises and, for Ensemble(E), the paper's
             "minimum predicted Q-value under an ensemble"),
  true       the γ-discounted return of the same stochastic policy, rolled out in Pendulum-v1 from
             each of the dataset's initial states (D0) for `horizon` steps.
The critic bootstraps through the 200-step time limit (discount 1 at truncations), so it estimates
the infinite-horizon value; rollouts therefore run `horizon` = 1000 steps (γ^1000 ≈ 4e-5) rather
than the 200 of an episode. Backups are deterministic (no entropy bonus) so Q is in reward units.

  PYTHONPATH=$PWD MINARI_DATASETS_PATH=/work/main/data/minari \\
    python -m experiments.table4 --num_steps=5000 --num_seeds=2 --write_results
"""
from __future__ import annotations

import time

from absl import app, flags
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from cql_jax.continuous import networks
from cql_jax import train
from cql_jax.agents import device_data, make_agent
from cql_jax.continuous import variants
from cql_jax.data import minari_io
from cql_jax.makers import pendulum
from cql_jax.evaluation import seed_state
from cql_jax.envs.pendulum import set_pendulum_state
from experiments import results_md
from experiments import sweep_flags

FLAGS = flags.FLAGS
def define_flags() -> None:
  once = sweep_flags.define_once
  once(flags.DEFINE_list, "datasets", ["medium-replay", "medium-expert"], "Pendulum dataset kinds.")
  once(flags.DEFINE_list, "methods", ["cql_h", "cql_eq1", "ensemble_2", "ensemble_4",
                                      "ensemble_10", "ensemble_20"], "variants.variant_config names.")
  sweep_flags.define(num_steps=5000, num_seeds=2)
  once(flags.DEFINE_float, "gamma", 0.99, "Discount of the critic and of the true return.")
  once(flags.DEFINE_float, "polyak", 5e-3, "Target-critic Polyak rate.")
  once(flags.DEFINE_integer, "value_samples", 100, "Policy samples M per initial state for V̂.")
  once(flags.DEFINE_integer, "horizon", 1000, "Rollout length for the true discounted return.")


HEADING = "## Table 4: value over/under-estimation (issue 5)"
LABELS = {"cql_h": "CQL(H)", "cql_eq1": "CQL (Eq. 1)", "cql_rho": "CQL(ρ)"}


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
  envs = [gym.make(pendulum.ENV_ID).unwrapped for _ in initial_obs]
  for i, (env, obs) in enumerate(zip(envs, initial_obs)):
    env.reset(seed=i)
    set_pendulum_state(env, obs)
  obs = np.asarray(initial_obs, np.float32)
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


def make_predicted_value(config, obs_dim, action_dim):
  """Returns v(state, obs [K, O], key) -> [K]: E_{a~π}[min_E Q(s, a)] from M samples."""
  actor = networks.TanhGaussianActor(action_dim, tuple(config.actor_hidden_sizes),
                                     config.log_std_min, config.log_std_max)
  critic = networks.CriticEnsemble(int(config.num_critics), tuple(config.critic_hidden_sizes))

  @jax.jit
  def value(state, obs, key):
    mean, log_std = actor.apply(state.actor_params, obs)
    actions, _ = networks.sample_tanh_gaussian(mean, log_std, key, FLAGS.value_samples)
    q = critic.apply(state.critic_params, obs, actions)          # [E, K, M]
    return jnp.mean(jnp.min(q, axis=0), axis=-1)
  return value


def base_config():
  config = sweep_flags.agent_config()
  config.gamma = FLAGS.gamma
  config.polyak = FLAGS.polyak
  config.backup_entropy = False  # Q in reward units, comparable with the discounted return.
  return config


def run_one(kind: str, name: str, key):
  dataset = minari_io.load_dataset(pendulum.dataset_id(kind))
  config = variants.variant_config(name, base_config())
  agent = make_agent(config, dataset)
  data = device_data(dataset)
  start = time.time()
  states = train.fit(agent, data, seed=FLAGS.seed, num_steps=FLAGS.num_steps,
                     steps_per_chunk=FLAGS.steps_per_chunk, batch_size=FLAGS.batch_size,
                     num_seeds=FLAGS.num_seeds)
  jax.block_until_ready(states)
  train_s = time.time() - start
  value = make_predicted_value(config, dataset.obs_dim, dataset.action_dim)
  act = jax.jit(agent.act, static_argnums=3)
  predicted, true = [], []
  for s in range(FLAGS.num_seeds):
    state = seed_state(states, s)
    value_key, rollout_key = jax.random.split(jax.random.fold_in(key, s))
    predicted.append(float(np.mean(value(state, jnp.asarray(dataset.initial_obs), value_key))))
    true.append(float(np.mean(true_discounted_returns(
        lambda o, k, st=state: act(st, o, k, False), dataset.initial_obs, config.gamma,
        FLAGS.horizon, rollout_key))))
  return np.array(predicted), np.array(true), train_s


def fmt(x: np.ndarray) -> str:
  return f"{x.mean():.1f} ± {x.std():.1f}" if len(x) > 1 else f"{x.mean():.1f}"


def main(argv):
  del argv
  root = jax.random.key(FLAGS.seed + 1)
  results = {}
  for d, kind in enumerate(FLAGS.datasets):
    for m, name in enumerate(FLAGS.methods):
      pred, true, secs = run_one(kind, name, jax.random.fold_in(root, 100 * d + m))
      results[(name, kind)] = (pred, true)
      print(f"{kind:14s} {label(name):12s} predicted {fmt(pred):>16s} true {fmt(true):>16s} "
            f"diff {fmt(pred - true):>16s}  ({secs:.0f} s, "
            f"{FLAGS.num_steps * 1.0 / secs:.0f} steps/s for {FLAGS.num_seeds} seeds)", flush=True)
  header = "| method | " + " | ".join(f"{k}: predicted − true" for k in FLAGS.datasets) + " | " + \
      " | ".join(f"{k}: predicted / true" for k in FLAGS.datasets) + " |"
  rows = [header, "|---|" + "---:|" * (2 * len(FLAGS.datasets))]
  for name in FLAGS.methods:
    diffs = [fmt(results[(name, k)][0] - results[(name, k)][1]) for k in FLAGS.datasets]
    both = [f"{results[(name, k)][0].mean():.1f} / {results[(name, k)][1].mean():.1f}"
            for k in FLAGS.datasets]
    rows.append(f"| {label(name)} | " + " | ".join(diffs + both) + " |")
  table = "\n".join(rows)
  print(table)
  if FLAGS.write_results:
    body = f"""Command (2-core shared CPU, JAX CPU backend):

    PYTHONPATH=$PWD MINARI_DATASETS_PATH=/work/main/data/minari python -m experiments.table4 \\
      --num_steps={FLAGS.num_steps} --steps_per_chunk={FLAGS.steps_per_chunk} \\
      --num_seeds={FLAGS.num_seeds} --seed={FLAGS.seed} --gamma={FLAGS.gamma} --polyak={FLAGS.polyak} --horizon={FLAGS.horizon} --write_results

Setup: actor and critics {FLAGS.hidden}-{FLAGS.hidden}, batch {FLAGS.batch_size}, actor lr {FLAGS.actor_lr}, critic lr 1e-3,
{FLAGS.num_steps} gradient steps, {FLAGS.num_seeds} seeds (vmapped), γ = {FLAGS.gamma}, Polyak rate
{FLAGS.polyak}, deterministic backup (no
entropy in the target). CQL(H) and CQL (Eq. 1) use α = {FLAGS.cql_weight} with two critics; Ensemble(E)
is offline SAC (α = 0) with the min over E critics. Predicted = E_{{s~D0}}[E_{{a~π}}[min_E Q(s, a)]]
({FLAGS.value_samples} policy samples per state, D0 = the dataset's 100 initial states); true = the
γ-discounted return of the same stochastic policy rolled out from those states in Pendulum-v1
(state set from the observation) for {FLAGS.horizon} steps, since the critic bootstraps through the
200-step time limit and so estimates the infinite-horizon value. Entries are mean ± std over seeds of
predicted − true; the last columns give the seed-mean predicted / true values (rewards ≤ 0, so values
are negative).

{table}
"""
    results_md.write_section(FLAGS.results, HEADING, body)


if __name__ == "__main__":
  define_flags()
  app.run(main)
