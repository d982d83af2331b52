"""Settings shared by every domain; each cql_jax/configs/<domain>.py starts from get_config().

Also holds the config helpers the entry point and tests use: a readable error for an unknown
override key (absl only says "Unknown command line flag") and `override` for dotted updates.
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping

import ml_collections
from ml_collections import config_dict

from cql_jax import finetune
from cql_jax.continuous import agent as cql


def get_config() -> ml_collections.ConfigDict:
  """Unlocked base config; domain files override it and lock it."""
  c = ml_collections.ConfigDict()
  # The whole data selection: a Minari id, e.g. "mujoco/hopper/medium-v0", or several joined
  # by "+", whose transitions are appended (D4RL's medium-expert = medium + expert). Overriding
  # it replaces the variant's selection entirely.
  c.dataset_id = config_dict.placeholder(str)
  # A .npz dataset file (keys in cql_jax.data.npz); when set it is trained on instead of
  # dataset_id.
  c.dataset_path = config_dict.placeholder(str)
  # Evaluation environment for data that records none (an .npz without 'env_id'); a Minari
  # dataset's own stored spec always wins. env_kwargs: gymnasium.make keyword arguments.
  c.env_id = config_dict.placeholder(str)
  c.env_kwargs = ml_collections.ConfigDict()
  # "<config file>:<variant>", so a missing-dataset error can print the exact relaunch command.
  c.config_arg = config_dict.placeholder(str)

  c.data = ml_collections.ConfigDict()
  c.data.reward_scale = 1.0                      # reward ← reward·scale + bias (training only).
  c.data.reward_bias = 0.0
  c.data.obs_keys = config_dict.placeholder(tuple)  # dict observations: keys to concatenate.
  # Why a variant has no dataset_id (e.g. no Minari counterpart); raised when the data is
  # loaded, so that --config.dataset_id or --config.dataset_path can still supply one.
  c.data.unavailable = config_dict.placeholder(str)
  # Sparse-reward tasks (Cal-QL's return-to-go, cql_jax.data.returns): the per-step failure
  # reward after the transform; an episode of nothing else is worth it / (1 − γ) at every step.
  c.data.sparse_failure_reward = config_dict.placeholder(float)

  c.agent = cql.default_config()  # backs up without the entropy term, as public CQL code.

  c.num_steps = 1_000_000        # gradient steps per seed.
  c.steps_per_chunk = 1000       # updates per compiled call; also the training-log interval.
  c.batch_size = 256
  c.eval_every = 10_000          # gradient steps; a multiple of steps_per_chunk.
  c.eval_episodes = 10           # per seed.
  c.eval_deterministic = True    # act with the policy's mode (False: sample / ε-greedy).
  c.eval_seed = 1_000_000        # env reset seed of evaluation (kept apart from training seeds).
  c.checkpoint_every = 50_000    # gradient steps; a multiple of steps_per_chunk.
  c.keep_checkpoints = 3         # last N checkpoints kept.
  # A warning (log + metrics "critic/q_bound_ratio", "warnings/q_divergence") when the mean Q on
  # the data exceeds this many times max|r|/(1-gamma), which no policy's return can exceed.
  c.q_divergence_factor = 10.0

  # Offline model selection (cql_jax.statistics, cql_jax.selection): at every evaluation the
  # critic's statistics (average data Q, TD error, CQL gap, Q at the start states) on a fixed
  # slice are written as metrics.jsonl rows of kind "offline". holdout_fraction > 0 keeps that
  # share of whole episodes out of training and computes them there; 0 (the default, so every
  # recipe trains on all its data) computes them on a fixed sample of the training data.
  c.selection = ml_collections.ConfigDict()
  c.selection.statistics = True
  c.selection.holdout_fraction = 0.0
  c.selection.num_transitions = 4096  # size of the fixed slice.
  c.selection.seed = 0                # which episodes are held out, which transitions sampled.

  # Online fine-tuning after the offline steps (cql_jax.finetune): online.steps environment
  # steps per member in the dataset's own environment; 0 trains offline only.
  c.online = finetune.default_config()

  # Metric sinks besides metrics.jsonl (always written).
  c.log = ml_collections.ConfigDict()
  c.log.tensorboard = True       # tb/seed_<s>/ and tb/mean/.
  c.log.wandb = False            # Weights & Biases (needs the [wandb] extra); files in wandb/.
  c.log.wandb_project = "cql_jax"
  c.log.wandb_mode = "offline"   # "offline": `wandb sync <workdir>/wandb/wandb/offline-run-*` later.

  # Devices: "auto" (every device; members split over as many as divide their number, each
  # batch over the rest), "single" (one device) or "MxD" (cql_jax.parallel.choose_layout).
  c.layout = "auto"
  return c


def variant_config(domain: str, variant: str, choices, dataset_id_format: str
                   ) -> ml_collections.ConfigDict:
  """Unlocked base config for one of a domain file's named variants.

  domain: the file's name in cql_jax/configs (e.g. "kitchen"); choices: the valid variants;
  dataset_id_format: the Minari id with "{variant}" in it, e.g. "D4RL/kitchen/{variant}-v2".
  """
  if variant not in choices:
    raise ValueError(f"unknown {domain} variant '{variant}'; choose one of {', '.join(choices)}.")
  c = get_config()
  c.dataset_id = dataset_id_format.format(variant=variant)
  c.config_arg = f"cql_jax/configs/{domain}.py:{variant}"
  return c


def use_reference_recipe(c: ml_collections.ConfigDict, cql_weight: float) -> None:
  """The CQL authors' recipe for D4RL-style domains (their released code): 3×256 networks,
  actor lr 1e-4 (the temperature's too), critic lr 3e-4, α = cql_weight, 1M steps."""
  c.agent.actor_hidden_sizes = (256, 256, 256)
  c.agent.critic_hidden_sizes = (256, 256, 256)
  c.agent.actor_lr = 1e-4
  c.agent.critic_lr = 3e-4
  c.agent.alpha_lr = 1e-4
  c.agent.cql.weight = cql_weight
  c.num_steps = 1_000_000


def short_budget_agent_config(hidden: int = 64) -> ml_collections.ConfigDict:
  """CQL(H) with two hidden layers of `hidden` units for budgets of ~10k gradient steps.

  Used for Pendulum (classic.py) and for the comparisons on the project's MuJoCo datasets that a
  2-core CPU can afford. Returns reach −1000 (Pendulum) or +1000s (MuJoCo), so Q-values settle
  far from the critic's start at 0; with the reference critic lr 3e-4 the critic is still
  travelling there after 10k steps and the policy chases a moving target (measured on Pendulum
  medium-expert: normalized 20–40 at 8k steps). A critic lr of 1e-3 with the public codes'
  deterministic backup reached 95 at 8k steps (RESULTS.md). α = 5 as in the official gym recipe.

  On the project's MuJoCo data (RESULTS.md, 3 seeds) this recipe beats offline SAC and matches
  BC on medium-replay, but trails BC on medium-expert at 10k–20k steps (Hopper 34.8 vs 50.3 at
  20k): with Polyak 0.005 the critic is still far below the data's returns at s0. Tested on
  Hopper, one change at a time: bc_steps = 5000 gives +11 on medium-expert and nothing on
  medium-replay; polyak = 0.02 makes the critic over-rate its policy and splits the seeds. Neither
  holds on both mixtures, so bc_steps stays 0 (the paper's method as described); the reference
  recipe's 1M steps is what these short budgets cannot test.
  """
  agent = cql.default_config()
  agent.actor_hidden_sizes = (hidden, hidden)
  agent.critic_hidden_sizes = (hidden, hidden)
  agent.actor_lr = 3e-4
  agent.critic_lr = 1e-3
  agent.alpha_lr = 3e-4
  agent.cql.weight = 5.0
  return agent


def unknown_key_message(config: ml_collections.ConfigDict, dotted_key: str) -> str:
  """Explains why `dotted_key` (e.g. "agent.cql.wieght") is not in `config` and lists valid keys."""
  node, prefix = config, "config"
  for part in dotted_key.split("."):
    if isinstance(node, (ml_collections.ConfigDict, Mapping)) and part in node:
      node, prefix = node[part], f"{prefix}.{part}"
      continue
    if not isinstance(node, (ml_collections.ConfigDict, Mapping)):
      return (f"Unknown config key '{dotted_key}': {prefix} is a value "
              f"({type(node).__name__}), not a group, so it has no field '{part}'.")
    valid = sorted(node.keys())
    close = difflib.get_close_matches(part, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return (f"Unknown config key '{dotted_key}': {prefix} has no field '{part}'.{hint} "
            f"Valid keys of {prefix}: {', '.join(valid)}. Configs are locked so a misspelt "
            "override cannot silently add a new field.")
  return f"config key '{dotted_key}' exists"


def override(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Returns a copy of `config` with dotted keys set, e.g. {"agent.cql.weight": 10.0}.

  Raises KeyError with the valid keys when a key does not exist (the copy stays locked).
  """
  config = config.copy_and_resolve_references()
  config.lock()
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    try:
      for part in parents:
        node = node[part]
      if leaf not in node:
        raise KeyError(leaf)
      node[leaf] = value
    except (KeyError, AttributeError, TypeError) as e:
      if isinstance(e, TypeError) and leaf in node:
        raise  # wrong value type for an existing key: ml_collections' message says which.
      raise KeyError(unknown_key_message(config, dotted)) from None
  return config


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads "<path>.py[:arg]" the way --config does (used to explain a failed override)."""
  import importlib.util
  path, _, arg = spec.partition(".py:")
  path = path if path.endswith(".py") else path + ".py"
  module_spec = importlib.util.spec_from_file_location("_cql_jax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def unknown_override_keys(config: ml_collections.ConfigDict, argv) -> list:
  """Dotted keys of `--config.<key>=...` arguments in argv that `config` does not have."""
  unknown = []
  for token in argv:
    if not token.startswith("--config."):
      continue
    dotted = token[len("--config."):].split("=", 1)[0]
    node = config
    for part in dotted.split("."):
      if not isinstance(node, (ml_collections.ConfigDict, Mapping)) or part not in node:
        unknown.append(dotted)
        break
      node = node[part]
  return unknown
