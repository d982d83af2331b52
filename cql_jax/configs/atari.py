"""Discrete CQL on the DQN-replay Atari data (REFERENCE.md section 2; paper section 6.2).

Argument "<game>-<percent>[-<algo>]":
  game:    pong | breakout | qbert | seaquest | asterix (the paper's five games).
  percent: 1  -> uniform_1pct  (1% of each of the 50 checkpoints, 500k transitions),
           10 -> uniform_10pct (10% of each, 5M),
           20 -> first_20pct   (checkpoints 0-9 in full, the first 10M transitions).
  algo:    cql (default: QR-DQN + CQL(H)), qrdqn or rem (batch_rl baselines, weight 0), dqn.
e.g. --config=cql_jax/configs/atari.py:pong-1 or atari.py:breakout-10-qrdqn.

Hyperparameters are batch_rl's fixed-replay QR-DQN ones (quantile*.gin): Adam 5e-5, eps 0.01/32,
batch 32, gamma 0.99, 1-step targets, target network every 2000 gradient steps (8000 agent steps
at update period 4), 200 iterations x 62.5k gradient steps, evaluation with epsilon 0.001.
CQL weight: the official README's 4.0 for 1% data and 1.0 for 10%; we also use 1.0 for the
first-20% setting (more, and less diverse, data than 10%). Rewards are clipped to [-1, 1] when
sampled, as Dopamine does.
"""
from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from cql_jax.discrete import agent as discrete
from cql_jax.discrete import variants
from cql_jax.configs import base

GAMES = {"pong": "Pong", "breakout": "Breakout", "qbert": "Qbert", "seaquest": "Seaquest",
         "asterix": "Asterix"}
SETTINGS = {"1": "uniform_1pct", "10": "uniform_10pct", "20": "first_20pct"}
CQL_WEIGHTS = {"1": 4.0, "10": 1.0, "20": 1.0}
ALGOS = ("cql", "qrdqn", "rem", "dqn")

GRAD_STEPS_PER_ITERATION = 62_500  # 250k agent steps at update period 4.
NUM_ITERATIONS = 200


def get_config(arg: str = "pong-1") -> ml_collections.ConfigDict:
  """Config for one game, data setting and algorithm; see the module docstring."""
  parts = arg.lower().split("-")
  if len(parts) not in (2, 3) or parts[0] not in GAMES or parts[1] not in SETTINGS or (
      len(parts) == 3 and parts[2] not in ALGOS):
    raise ValueError(f"bad atari config argument {arg!r}: expected <game>-<percent>[-<algo>] "
                     f"with game in {sorted(GAMES)}, percent in {sorted(SETTINGS)}, algo in "
                     f"{ALGOS}, e.g. 'pong-1' or 'breakout-10-qrdqn'.")
  game, percent = GAMES[parts[0]], parts[1]
  algo = parts[2] if len(parts) == 3 else "cql"

  c = base.get_config()
  c.dataset_id = f"dqn-replay/{game}/{SETTINGS[percent]}"  # a name for logs; not a Minari id.
  c.config_arg = f"cql_jax/configs/atari.py:{arg}"
  c.atari = ml_collections.ConfigDict()
  c.atari.game = game  # ALE name, for cql_jax.envs.atari.make_atari_env.
  c.atari.setting = SETTINGS[percent]  # key of dopamine_replay.PAPER_SETTINGS.
  c.atari.run = 1  # DQN-replay run 1-5; the paper reports run 1..5 averages.
  # gs://atari-replay-datasets/dqn/<Game>/<run>/replay_logs copied locally; set on the command line.
  c.atari.replay_dir = config_dict.placeholder(str)
  c.atari.window = "head"  # dopamine_replay.load_dopamine_replay: official contiguous head.
  c.atari.clip_reward = 1.0
  c.atari.max_episode_steps = 27_000  # evaluation cap in agent steps (108k frames).

  # Nature CNN, QR-DQN 200 quantiles, batch_rl optimiser; the baselines have cql.weight 0.
  c.agent = variants.variant_config("cql_qrdqn" if algo == "cql" else algo,
                                    discrete.default_config(), cql_weight=CQL_WEIGHTS[percent])
  if algo == "dqn":
    # batch_rl's DQN used RMSProp 2.5e-4; the agent only has Adam, so use Adam at that rate.
    c.agent.lr = 2.5e-4

  c.num_steps = NUM_ITERATIONS * GRAD_STEPS_PER_ITERATION  # 12.5M gradient steps.
  c.batch_size = 32
  c.steps_per_chunk = 2_500  # divides eval_every; ~1 s of H100 time per chunk.
  c.eval_every = GRAD_STEPS_PER_ITERATION  # one batch_rl iteration.
  c.checkpoint_every = GRAD_STEPS_PER_ITERATION
  c.eval_episodes = 10  # batch_rl ran 125k agent steps; episodes are the cheaper proxy.
  c.eval_deterministic = False  # act epsilon-greedily with agent.epsilon = 0.001.
  c.lock()
  return c
