"""MuJoCo locomotion (hopper, halfcheetah, walker2d) on Minari's `mujoco/<env>/<kind>-v0` data.

Variants are "<env>-<kind>", e.g. hopper-medium-expert. Minari's locomotion sets are NOT the D4RL
ones (Minari says not all its datasets match D4RL): they were regenerated on Gymnasium MuJoCo
v5 with SB3 policies and carry their own reference scores, so D4RL/paper numbers do not
transfer. The id mapping chosen here:
  <env>-random        -> mujoco/<env>/random-v0
  <env>-simple        -> mujoco/<env>/simple-v0      (Minari only)
  <env>-medium        -> mujoco/<env>/medium-v0
  <env>-expert        -> mujoco/<env>/expert-v0
  <env>-medium-expert -> mujoco/<env>/medium-v0+mujoco/<env>/expert-v0, concatenated (that is
                         how D4RL built medium-expert; Minari has no such set)
  <env>-medium-replay -> no Minari equivalent (there is no stored replay buffer); loading it is
                         refused with an error rather than silently mapped to a different kind of
                         data, unless --config.dataset_id or --config.dataset_path names the data.
Variants "cql_jax/<env>-<kind>" use the project's own datasets `cql_jax/<env>/<kind>-v0`
instead (made by experiments/make_datasets.py with the project's online SAC; kinds random, medium,
expert, medium-replay, medium-expert), e.g. --config=cql_jax/configs/locomotion.py:cql_jax/hopper-medium-replay.
Hyperparameters: official/CORL/d3rlpy 3x256 networks, π lr 1e-4, Q lr 3e-4, fixed α = 5
(JaxCQL, d3rlpy; CORL uses 10), batch 256, 1M steps, deterministic backup (the public
recipes). These are not re-tuned on the project's own MuJoCo data: no run here has used them
at their 1M-step budget. What the short-budget runs of RESULTS.md say about reading a shorter
budget: with Polyak rate 0.005 the target critic does roughly steps × 0.005 Bellman
iterations, so at 10k steps it is a ≈ 50-step-horizon critic of 1000-step episodes (on
Pendulum and CartPole the measured Q(s0) followed the iteration count), and a 10k-step
comparison with BC tests a young critic, not the recipe.
"""
from __future__ import annotations

import ml_collections

from cql_jax.makers import mujoco_datasets
from cql_jax.configs import base

OWN_PREFIX = "cql_jax/"
ENVS = ("hopper", "halfcheetah", "walker2d")
KINDS = ("random", "simple", "medium", "expert", "medium-expert", "medium-replay")


def unavailable_reason(env: str, kind: str):
  """Why a Minari variant has no data (None when it has), raised when its data is loaded."""
  if kind != "medium-replay":
    return None
  return (f"{env}-medium-replay has no Minari counterpart: Minari's mujoco namespace stores no "
          "replay buffers. Use one of " + ", ".join(
              f"{env}-{k}" for k in KINDS if k != "medium-replay")
          + f", the project's own cql_jax/{env}-medium-replay, or set --config.dataset_id to a "
          "Minari id you have (or --config.dataset_path to a .npz file).")


def dataset_ids(env: str, kind: str) -> tuple:
  """Minari ids for a variant, appended in order; () for a variant without data."""
  if kind == "medium-replay":
    return ()
  if kind == "medium-expert":
    return (f"mujoco/{env}/medium-v0", f"mujoco/{env}/expert-v0")
  return (f"mujoco/{env}/{kind}-v0",)


def get_config(variant: str = "hopper-medium") -> ml_collections.ConfigDict:
  own = variant.startswith(OWN_PREFIX)
  env, _, kind = variant[len(OWN_PREFIX) if own else 0:].partition("-")
  kinds = mujoco_datasets.KINDS if own else KINDS
  if env not in ENVS or kind not in kinds:
    raise ValueError(f"unknown locomotion variant '{variant}'; expected <env>-<kind> (Minari's "
                     f"mujoco/ data) or {OWN_PREFIX}<env>-<kind> (the project's own, made by "
                     f"experiments/make_datasets.py) with env in {ENVS} and kind in {kinds}, "
                     "e.g. hopper-medium-expert or cql_jax/hopper-medium-replay.")
  ids = (mujoco_datasets.dataset_id(env, kind),) if own else dataset_ids(env, kind)
  c = base.get_config()
  c.dataset_id = "+".join(ids) or None
  if not own:
    c.data.unavailable = unavailable_reason(env, kind)
  c.config_arg = f"cql_jax/configs/locomotion.py:{variant}"
  base.use_reference_recipe(c, cql_weight=5.0)
  c.lock()
  return c
