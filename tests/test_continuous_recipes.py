"""The continuous family's split and recipes (cql_jax/configs/control.py,
experiments/continuous_recipes.py): configs only, nothing trains."""
import pytest

from cql_jax.configs import control
from cql_jax.makers import mujoco_datasets
from experiments import budget as budget_lib
from experiments import continuous_recipes


def test_split_is_disjoint_and_covers_the_family():
  assert set(control.DEV).isdisjoint(control.TEST) and control.TEST
  assert set(control.DEV) | set(control.TEST) == set(control.ENVS)
  assert all(env in mujoco_datasets.ENVS for env in control.ENVS)


def test_recipes_differ_only_where_they_say():
  budget = budget_lib.Budget(num_steps=3000, num_seeds=4, eval_every=1000)
  configs = {r: continuous_recipes.run_config("reacher", "medium-replay", r, budget)
             for r in ("cql", "cql_bcwarm", "bc")}
  for config in configs.values():
    assert config.dataset_id == "cql_jax/reacher/medium-replay-v0"
    assert (config.num_steps, config.eval_every, config.eval_episodes) == (3000, 1000, 10)
  cql, warm, bc = configs["cql"].agent, configs["cql_bcwarm"].agent, configs["bc"].agent
  assert cql.bc_steps == 0 and warm.bc_steps == 600                # a fifth of the budget.
  assert bc.algorithm == "bc" and cql.algorithm != "bc"
  assert warm.to_dict() | {"bc_steps": 0} == cql.to_dict()


def test_unknown_variant_names_the_choices():
  with pytest.raises(ValueError, match="reacher-medium-replay"):
    control.get_config("reacher-mediumreplay")


def test_envs_pick_a_subset_of_the_split_and_refuse_the_other_split():
  assert continuous_recipes.split_envs("dev") == control.DEV
  picked = [env for env, _, _ in continuous_recipes.datasets(
      "dev", ["medium-replay"], "runs", envs=[control.DEV[-1], control.DEV[0]])]
  assert picked == [control.DEV[0], control.DEV[-1]]               # the split's order.
  with pytest.raises(ValueError, match=f"{control.TEST[0]} not in the dev split"):
    continuous_recipes.split_envs("dev", [control.TEST[0]])
