"""Evaluation rollouts of a policy in Gymnasium vector environments.

The evaluation environment is the dataset's own: the spec a Minari dataset stores for
evaluation (what ``MinariDataset.recover_environment(eval_env=True)`` builds), else the
environment id and kwargs the dataset or the domain config records. Observations pass through
the same transform as the training data (:func:`cql_jax.data.observations.flatten_observations`
with the dataset's ``obs_keys``), so dict-observation environments (AntMaze, Kitchen) give the
agent the vectors it was trained on.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Union

import gymnasium as gym
import jax
import numpy as np

from cql_jax import rollout
from cql_jax.data import maze_maps
from cql_jax.data import observations
from cql_jax.data.errors import DatasetError


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """returns, discounted_returns, lengths: [num_episodes]; normalized: [num_episodes] or None;
  terminated: [num_episodes] bool, whether each episode ended by termination (not time limit)."""
  returns: np.ndarray
  discounted_returns: np.ndarray
  lengths: np.ndarray
  normalized: Optional[np.ndarray]
  terminated: Optional[np.ndarray] = None

  @property
  def mean_return(self) -> float:
    return float(self.returns.mean())

  @property
  def mean_normalized(self) -> float:
    if self.normalized is None:
      raise ValueError("this evaluation has no reference scores; pass ref_min/ref_max")
    return float(self.normalized.mean())


def make_vector_env(env_id, num_envs: int, env_kwargs: Optional[dict] = None):
  """Synchronous vector env (many small envs are cheaper in-process than in subprocesses).

  env_id: a Gymnasium id or an EnvSpec (then env_kwargs are applied on top of its kwargs).
  """
  return _build(lambda: gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                                     **(env_kwargs or {})), _env_name(env_id), env=env_id)


def _env_name(env) -> str:
  return getattr(env, "id", env)


def _build(make: Callable[[], Any], name: str, dataset_id: Optional[str] = None, env=None):
  """make(), retried once after importing gymnasium_robotics for its unregistered ids.

  env: the id or EnvSpec being built; Gymnasium-Robotics ones get their MuJoCo compatibility
  fix first (cql_jax.envs.robotics.patch_joint_getters).
  """
  from cql_jax.envs import robotics  # pylint: disable=import-outside-toplevel
  whose = f" (the evaluation environment of {dataset_id})" if dataset_id else ""
  try:
    try:
      robotics.prepare_to_build(name if env is None else env)
      return make()
    except gym.error.NameNotFound:
      try:
        import gymnasium_robotics  # pylint: disable=import-outside-toplevel
      except ImportError as err:
        raise DatasetError(
            f"environment {name}{whose} is not registered with Gymnasium. If it is a "
            "Gymnasium-Robotics environment (AntMaze, Adroit, Kitchen), install the 'robotics' "
            "extra: pip install gymnasium-robotics==1.4.2.") from err
      gym.register_envs(gymnasium_robotics)
      robotics.patch_joint_getters()
      return make()
  except DatasetError:
    raise
  except Exception as err:  # pylint: disable=broad-except
    known = robotics.diagnose_build_failure(f"environment {name}{whose}", err)
    if robotics.LAST_GOOD_MUJOCO in str(known):  # a known cause with a known fix: say that one.
      raise DatasetError(str(known)) from err
    detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    raise DatasetError(
        f"environment {name}{whose} cannot be built here ({detail}). Install the packages it "
        "needs (MuJoCo tasks: the 'mujoco' extra; AntMaze/Adroit/Kitchen: the 'robotics' extra), "
        "or evaluate elsewhere.") from err


def _flat_space(dataset) -> gym.spaces.Box:
  return gym.spaces.Box(-np.inf, np.inf, (dataset.obs_dim,), np.float32)


def make_eval_env(dataset, num_envs: int, vector_kwargs: Optional[dict] = None):
  """`num_envs` copies of `dataset`'s evaluation environment, observations flattened as in training.

  Built from dataset.env_spec (a Minari dataset's stored evaluation spec) when there is one,
  else from dataset.env_id and dataset.env_kwargs. Dict observations come out as float32
  [num_envs, O] through flatten_observations(obs, dataset.obs_keys). vector_kwargs go to
  gymnasium.make_vec (online fine-tuning asks for AutoresetMode.SAME_STEP).

  Raises:
    DatasetError: the dataset records no environment, or it cannot be built here.
  """
  spec = getattr(dataset, "env_spec", None)
  if spec is None and dataset.env_id is None:
    raise DatasetError(
        f"{dataset.dataset_id} records no environment to evaluate in. Set config.env_id (and "
        "config.env_kwargs) in the domain config, store 'env_id' in the .npz file, or pass "
        "env_id to OfflineDataset.from_arrays.")
  if spec is not None:
    env = _build(lambda: gym.make_vec(spec, num_envs=num_envs, vectorization_mode="sync",
                                      vector_kwargs=vector_kwargs),
                 spec.id, dataset.dataset_id, env=spec)
  else:
    env = _build(lambda: gym.make_vec(dataset.env_id, num_envs=num_envs,
                                      vectorization_mode="sync", vector_kwargs=vector_kwargs,
                                      **(dataset.env_kwargs or {})),
                 dataset.env_id, dataset.dataset_id)
  obs_keys = getattr(dataset, "obs_keys", None)
  if isinstance(env.single_observation_space, gym.spaces.Dict) or obs_keys is not None:
    env = _FlatObservations(env, obs_keys, _flat_space(dataset))
  return env


class _FlatObservations(gym.vector.VectorWrapper):
  """Flattens a vector env's observations with flatten_observations(obs, obs_keys).

  Gymnasium's own observation wrappers refuse AutoresetMode.SAME_STEP (they would leave
  info["final_obs"] untransformed), which online fine-tuning needs; here info passes through
  unchanged and the fine-tuning loop flattens the final observations itself.
  """

  def __init__(self, env, obs_keys, single_space: gym.spaces.Box):
    super().__init__(env)
    self._obs_keys = obs_keys
    self.single_observation_space = single_space
    self.observation_space = gym.vector.utils.batch_space(single_space, env.num_envs)

  def reset(self, *, seed=None, options=None):
    obs, info = self.env.reset(seed=seed, options=options)
    return observations.flatten_observations(obs, self._obs_keys), info

  def step(self, actions):
    obs, reward, terminated, truncated, info = self.env.step(actions)
    return (observations.flatten_observations(obs, self._obs_keys), reward, terminated,
            truncated, info)


class EnvCheck(NamedTuple):
  """What check_eval_env found: the environment's name and its (unflattened) spaces."""
  env_name: str
  observation_space: Any
  action_space: Any


def check_eval_env(dataset) -> EnvCheck:
  """Builds, resets and steps the dataset's evaluation environment once and checks its spaces.

  Meant for start-up, before training: an environment that cannot be built here, a dataset
  whose observation layout or size differs from the environment's, mismatched action
  spaces, or a maze other than the one the data was recorded in (check_maze) each raise a
  DatasetError naming both sides and the fix.
  """
  spec = getattr(dataset, "env_spec", None)
  name = spec.id if spec is not None else dataset.env_id
  if spec is None and dataset.env_id is None:
    make_eval_env(dataset, 1)  # raises the "records no environment" error.
  make = (lambda: gym.make(spec)) if spec is not None else (
      lambda: gym.make(dataset.env_id, **(dataset.env_kwargs or {})))
  env = _build(make, name, dataset.dataset_id, env=spec if spec is not None else name)
  try:
    def probe():
      env.reset(seed=0)
      env.action_space.seed(0)
      env.step(env.action_space.sample())
    _build(probe, name, dataset.dataset_id)
    obs_space, act_space = env.observation_space, env.action_space
    check_maze(dataset, env, name)
  finally:
    env.close()
  check_spaces(dataset, obs_space, act_space, name)
  return EnvCheck(name, obs_space, act_space)


def check_maze(dataset, env, env_name: str) -> None:
  """Raises DatasetError when `env` (built, reset) is a maze whose walls differ from the maze
  `dataset` was recorded in (its data_env_spec; cql_jax.data.maze_maps)."""
  maze = getattr(env.unwrapped, "maze", None)
  built = getattr(maze, "maze_map", None)
  recorded = maze_maps.spec_maze_map(getattr(dataset, "data_env_spec", None))
  if built is None or recorded is None or maze_maps.same_walls(built, recorded):
    return
  raise DatasetError(
      f"{dataset.dataset_id}'s evaluation environment {env_name} builds the maze "
      f"{maze_maps.render(built)}, but its data were recorded in {maze_maps.render(recorded)}: "
      "scores there would not measure the data's task. Evaluate in the recording maze "
      "(config.env_kwargs.maze_map for data that store no spec).")


def check_spaces(dataset, obs_space, act_space, env_name: str) -> None:
  """Raises DatasetError when `dataset` does not fit an environment with these spaces."""
  ds = dataset.dataset_id
  fix = (f"Train on a dataset recorded in {env_name}, or evaluate in the environment that "
         "recorded this one (the Minari dataset's spec, the .npz 'env_id' key, or config.env_id "
         "for datasets that record none).")
  obs_keys = getattr(dataset, "obs_keys", None)
  dataset_space = getattr(dataset, "observation_space", None)
  if isinstance(dataset_space, gym.spaces.Dict):  # per key first: names the key that differs.
    observations.check_layout(dataset_space, obs_space, obs_keys, dataset_name=ds,
                              env_name=env_name)
  try:
    env_dim = observations.flat_size(obs_space, obs_keys)
  except DatasetError as err:
    raise DatasetError(f"{ds} and its evaluation environment {env_name} disagree on the "
                       f"observation layout: {err}") from err
  if env_dim != dataset.obs_dim:
    raise DatasetError(
        f"{ds} has {dataset.obs_dim}-d observations but its evaluation environment {env_name} "
        f"gives {env_dim}-d observations (observation space {obs_space}"
        f"{', keys ' + str(tuple(obs_keys)) if obs_keys else ''}). {fix}")
  if dataset_space is not None:  # equal sizes, e.g. image observations of another shape.
    observations.check_layout(dataset_space, obs_space, obs_keys, dataset_name=ds,
                              env_name=env_name)
  if dataset.discrete:
    if not isinstance(act_space, gym.spaces.Discrete) or int(act_space.n) != dataset.num_actions:
      raise DatasetError(f"{ds} has {dataset.num_actions} discrete actions but {env_name} has "
                         f"action space {act_space}. {fix}")
    return
  if not isinstance(act_space, gym.spaces.Box):
    raise DatasetError(f"{ds} has continuous [{dataset.action_dim}]-d actions but {env_name} has "
                       f"action space {act_space}. {fix}")
  env_dim = int(np.prod(act_space.shape))
  if env_dim != dataset.action_dim:
    raise DatasetError(f"{ds} has {dataset.action_dim}-d actions but {env_name} takes "
                       f"{env_dim}-d actions (action space {act_space}). {fix}")
  low = np.asarray(act_space.low, np.float32).reshape(-1)
  high = np.asarray(act_space.high, np.float32).reshape(-1)
  if dataset.action_low is not None and not (
      np.allclose(low, dataset.action_low) and np.allclose(high, dataset.action_high)):
    raise DatasetError(
        f"{ds} scales actions with bounds [{dataset.action_low}, {dataset.action_high}] but "
        f"{env_name}'s action space is [{low}, {high}]; the policy would act on the wrong scale. "
        f"Pass the environment's bounds as action_low/action_high, or {fix[0].lower()}{fix[1:]}")


def evaluate(policy: Callable[[np.ndarray, jax.Array], np.ndarray], env_id=None, *,
             num_episodes: int = 10, seed: Union[int, Sequence[int]] = 0, gamma: float = 0.99,
             env_kwargs: Optional[dict] = None, ref_min: Optional[float] = None,
             ref_max: Optional[float] = None, key=None, max_steps: int = 100_000,
             make_env: Optional[Callable[[int], gym.vector.VectorEnv]] = None,
             obs_keys: Optional[Sequence[str]] = None) -> EvalResult:
  """Runs `num_episodes` episodes, one per vector-env slot, each to its first termination/truncation.

  policy(obs [num_episodes, O], key) -> actions [num_episodes, A] (or [num_episodes] ints); it
  sees every slot at each step (finished slots too; their actions are ignored).
  env_id: a Gymnasium id or EnvSpec, built with env_kwargs.
  make_env(num_envs) -> vector env, when given, replaces it: for environments that need their
  own wrappers (Atari's Dopamine preprocessing; make_eval_env for a dataset's own environment).
  obs_keys: dict observations are flattened with flatten_observations(obs, obs_keys) (default:
  all keys, sorted), the loaders' transform.
  Slot i is reset with seed + i, or with seed[i] when `seed` is a list of num_episodes seeds
  (a sweep's members replaying the same episodes). Returns undiscounted and γ-discounted returns and lengths,
  and D4RL normalized scores if refs are given.
  """
  from cql_jax import scores  # pylint: disable=import-outside-toplevel
  env = make_vector_env(env_id, num_episodes, env_kwargs) if make_env is None \
      else make_env(num_episodes)
  slot_seeds = ([int(x) for x in seed] if isinstance(seed, Sequence)
                else [int(seed) + i for i in range(num_episodes)])
  if len(slot_seeds) != num_episodes:
    raise ValueError(f"seed lists {len(slot_seeds)} seeds for {num_episodes} episodes.")
  key = jax.random.key(slot_seeds[0]) if key is None else key
  keys = [key]

  def act(obs):
    keys[0], act_key = jax.random.split(keys[0])
    return np.asarray(policy(obs, act_key))

  def transform(obs):
    if isinstance(obs, Mapping) or obs_keys is not None:
      return observations.flatten_observations(obs, obs_keys)
    return obs

  try:
    records = rollout.run_episodes(env, act, slot_seeds,
                                   obs_transform=transform, max_steps=max_steps)
  finally:
    env.close()
  # Sums accumulate step by step (cumsum), the order in which a running total would add them.
  total = lambda x: float(np.cumsum(x)[-1]) if x.size else 0.0
  returns = np.asarray([total(r.rewards) for r in records], np.float64)
  discounted = np.asarray([total(gamma ** np.arange(r.length) * r.rewards) for r in records],
                          np.float64)
  lengths = np.asarray([r.length for r in records], np.int64)
  terminated = np.asarray([bool(r.length and r.terminations[-1]) for r in records], bool)
  normalized = None
  if ref_min is not None and ref_max is not None:
    normalized = scores.normalized_score(returns, ref_min, ref_max)
  return EvalResult(returns, discounted, lengths, normalized, terminated)


def success_rate_metric(dataset) -> bool:
  """Whether `dataset`'s evaluation environment scores by success rate: OGBench's single-task
  environments, which terminate exactly when the state before the step is a success
  (terminate_at_goal, success_timing "pre"), so an episode succeeds iff it ends by termination.
  The evaluator then adds "eval/success", in percent."""
  spec = getattr(dataset, "env_spec", None)
  entry = getattr(spec, "entry_point", None)
  return (isinstance(entry, str) and entry.startswith("ogbench.")
          and (spec.kwargs or {}).get("reward_task_id") is not None)


def evaluate_agent(agent, state, dataset, *, num_episodes: int = 10, seed: int = 0,
                   gamma: float = 0.99, deterministic: bool = True) -> EvalResult:
  """Rolls out `agent.act` for one (unstacked) train state in the dataset's own environment.

  The environment and the observation transform come from the dataset (make_eval_env); scores
  are normalized with its reference scores when it has them.
  """
  act = jax.jit(agent.act, static_argnums=3)
  return evaluate(lambda obs, key: act(state, obs, key, deterministic),
                  num_episodes=num_episodes, seed=seed, gamma=gamma,
                  make_env=lambda n: make_eval_env(dataset, n),
                  ref_min=dataset.ref_min_score, ref_max=dataset.ref_max_score)


def seed_state(states, index: int):
  """The train state of seed `index` from states stacked on a leading seed axis."""
  return jax.tree.map(lambda x: x[index], states)
