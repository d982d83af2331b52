"""Atari evaluation environments with the DQN-replay preprocessing (Gymnasium + ale-py).

Matches how the DQN-replay data was collected (Dopamine defaults): sticky actions with
probability 0.25, frame skip 4 with a max-pool over the last two raw frames, 84x84 grayscale,
4 stacked frames (zeros before the episode's first frame), minimal action set, no no-op starts,
no termination on life loss, and a cap of 27,000 agent steps (108,000 frames).
Observations are [84, 84, 4] uint8, newest frame last, as `dopamine_replay.sample_stacked` gives.

ale-py and OpenCV are optional dependencies, imported lazily: `pip install ale-py
opencv-python-headless` (verified: ale-py 0.12.1 with its bundled ROMs, opencv-python-headless
5.0.0.93, which gymnasium's AtariPreprocessing needs for the resize). The data was logged with
the legacy atari-py ROM set, so scores can differ slightly.
"""
from __future__ import annotations

import numpy as np

FRAME_SKIP = 4
SCREEN_SIZE = 84
STACK = 4
STICKY_ACTION_PROB = 0.25
MAX_EPISODE_STEPS = 27_000  # agent steps = 108k frames


def _import_ale():
  try:
    import ale_py  # pylint: disable=import-outside-toplevel
    import cv2  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError as err:
    raise ImportError(
        "Atari evaluation needs ale-py and OpenCV (tested: ale-py 0.12.1, "
        "opencv-python-headless 5.0): pip install 'ale-py>=0.12' opencv-python-headless") from err
  return ale_py


def make_atari_env(game: str, seed: int | None = None,
                   sticky_action_prob: float = STICKY_ACTION_PROB,
                   max_episode_steps: int = MAX_EPISODE_STEPS):
  """Builds one preprocessed Atari env.

  Args:
    game: the ALE game name as in the dataset, e.g. "Pong" or "Breakout" (becomes "ALE/Pong-v5").
    seed: seeds the emulator's randomness (sticky actions) on the first reset if given.
    sticky_action_prob: probability of repeating the previous action on each raw frame.
    max_episode_steps: truncation cap in agent steps (each = FRAME_SKIP frames).

  Returns:
    a gymnasium.Env with observation Box(0, 255, [84, 84, 4], uint8) and a Discrete action space
    (the game's minimal set, matching the dataset's action indices).
  """
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  ale_py = _import_ale()
  gym.register_envs(ale_py)
  # frameskip=1 at the emulator: AtariPreprocessing skips frames itself so it can max-pool.
  env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=sticky_action_prob,
                 full_action_space=False, max_num_frames_per_episode=FRAME_SKIP * max_episode_steps)
  env = gym.wrappers.AtariPreprocessing(
      env, noop_max=0, frame_skip=FRAME_SKIP, screen_size=SCREEN_SIZE,
      terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False)
  env = gym.wrappers.TimeLimit(env, max_episode_steps)
  env = gym.wrappers.FrameStackObservation(env, STACK, padding_type="zero")
  env = gym.wrappers.TransformObservation(
      env, lambda obs: np.moveaxis(np.asarray(obs), 0, -1),
      gym.spaces.Box(0, 255, (SCREEN_SIZE, SCREEN_SIZE, STACK), np.uint8))
  if seed is not None:
    env.reset(seed=seed)
    env.action_space.seed(seed)
  return env


def make_atari_vector_env(game: str, num_envs: int, seed: int = 0, **kwargs):
  """`num_envs` copies of `make_atari_env` in a gymnasium SyncVectorEnv, seeded seed..seed+n-1.

  Observations are [num_envs, 84, 84, 4] uint8, ready for a batched `Agent.act`.
  """
  import gymnasium as gym  # pylint: disable=import-outside-toplevel
  _import_ale()
  fns = [lambda i=i: make_atari_env(game, seed + i, **kwargs) for i in range(num_envs)]
  return gym.vector.SyncVectorEnv(fns)


def evaluate_atari_agent(agent, state, game: str, *, num_episodes: int = 10, seed: int = 0,
                         deterministic: bool = False, gamma: float = 0.99,
                         max_steps: int = MAX_EPISODE_STEPS, **env_kwargs):
  """Rolls out `agent.act` for one (unstacked) train state in `num_episodes` preprocessed games.

  deterministic=False acts epsilon-greedily with the agent's config.epsilon (0.001, the paper's
  evaluation setting). Returns `cql_jax.evaluation.EvalResult` (raw game scores, no
  normalisation). env_kwargs go to `make_atari_env` (e.g. sticky_action_prob).
  """
  import jax  # pylint: disable=import-outside-toplevel
  from cql_jax import evaluation  # pylint: disable=import-outside-toplevel

  act = jax.jit(agent.act, static_argnums=3)
  return evaluation.evaluate(
      lambda obs, key: act(state, obs, key, deterministic), f"ALE/{game}-v5",
      num_episodes=num_episodes, seed=seed, gamma=gamma, max_steps=max_steps,
      make_env=lambda n: make_atari_vector_env(game, n, seed, **env_kwargs))
