"""The peer side of experiments/peer.py: trains d3rlpy on an exported dataset and evaluates it.

Runs only in the peer virtualenv (`make peer-venv`: d3rlpy 2.8.1, torch's CPU build, the same
Gymnasium and MuJoCo as the package's), as a script file, never imported by cql_jax: it needs
NumPy, Gymnasium, torch and d3rlpy alone.

  .peer-venv/bin/python experiments/peer_d3rlpy.py --data=<export.npz> --algo=cql \\
      --seed=0 --steps=10000 --eval_every=1000 --eval_episodes=10 --eval_seed=1000000 \\
      --hidden=64,64 --out=<seed file.jsonl> [--overrides='{"conservative_weight": 10}'] \\
      [--online_steps=10000 --online_eval_every=1000 --offline_fraction=0.5] \\
      [--obs_keys=observation,desired_goal --reward_scale=10 --reward_bias=-5]

The data file is experiments/peer.py's export (cql_jax.data.npz's transition layout:
observations, next_observations, actions in environment units, rewards, terminals, truncations,
env_id, env_kwargs, ref_min_score, ref_max_score, discrete, num_actions, action_low,
action_high). Episodes are rebuilt so d3rlpy sees exactly the transitions cql_jax trains on: an
episode cut by a time limit keeps its final next observation (d3rlpy's own D4RL path drops that
last transition), and a terminated one ends in a terminal. Continuous actions are scaled to
[-1, 1] by d3rlpy's MinMaxActionScaler with the environment's bounds, as cql_jax does.

The environment is the data's env_id with its env_kwargs (Gymnasium-Robotics' ids registered on
first use). With --obs_keys (config.data.obs_keys) its dict observations are flattened as
cql_jax flattens them: those keys' arrays, each raveled, concatenated in that order. The
exported rewards already carry the config's transform; --reward_scale/--reward_bias apply the
same r·scale + bias to the rewards of the online phase's environment, never to the evaluation's,
whose returns are the environment's own.

Evaluation follows cql_jax.runner: after every `eval_every` gradient steps (and at the last),
`eval_episodes` episodes, episode j reset with seed eval_seed + j, actions from the greedy /
mean policy (d3rlpy's predict), normalized 100·(R − ref_min)/(ref_max − ref_min). Each
evaluation is appended to --out as one JSON line {"step", "return", "normalized_score",
"seconds"} the moment it is made; the last line is {"done": true, ...}.

Offline-to-online (--online_steps > 0, cal_ql or cql): after the offline steps, d3rlpy's own
`fit_online` acts in one environment (the data's env_id, first reset with seed
online_env_seed) with the stochastic policy for online_steps environment steps, one update per
step (UTD 1), each batch `offline_fraction` offline data and the rest online transitions
(d3rlpy's MixedReplayBuffer); every online_eval_every environment steps it evaluates as above.
Lines of the online phase, and the offline phase's last, carry "env_steps"; their "step" counts
gradient steps. What stays d3rlpy's: its online buffer drops a time-limited episode's last
transition, Cal-QL's return-to-go of an online transition covers the rewards its episode has
so far (it grows until the episode ends), and it cannot sample an empty online buffer, so
its updates start at the second online step (ours fill an empty buffer's share with offline data).
Its Cal-QL reference value is the discounted sum of the rewards left in a transition's episode
(a time-limited one's too): it has no failure value for sparse tasks
(cql_jax's config.data.sparse_failure_reward).
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import os
import time

import numpy as np

# d3rlpy's algorithm configs as its reproduction scripts set them (reproductions/offline/*.py),
# before --overrides. Networks come from --hidden for every algorithm.
# cql.py: π lr 1e-4, Q lr 3e-4, temperature lr 1e-4, α fixed (its lr 0) with weight 5.
_CQL = dict(actor_learning_rate=1e-4, critic_learning_rate=3e-4, temp_learning_rate=1e-4,
            alpha_learning_rate=0.0, conservative_weight=5.0, batch_size=256, n_action_samples=10)
ALGOS = {
    "cql": ("CQLConfig", _CQL),
    # Cal-QL is d3rlpy's CQL with the calibrated push-down term; the same settings, so the two
    # differ only by the calibration, as ours do.
    "cal_ql": ("CalQLConfig", _CQL),
    # bc.py: a deterministic policy, lr 1e-3, batch 100 (d3rlpy's defaults).
    "bc": ("BCConfig", dict()),
    # discrete_cql.py (Atari): lr 6.25e-5, batch 32, target every 8000 steps, α 1 (defaults).
    "discrete_cql": ("DiscreteCQLConfig", dict()),
    "discrete_bc": ("DiscreteBCConfig", dict()),
}
DISCRETE = ("discrete_cql", "discrete_bc")
# Actor-critic algorithms: separate actor and critic encoders, and the online phase is offered.
ACTOR_CRITIC = ("cql", "cal_ql")


def episodes_of(data):
  """d3rlpy Episodes holding exactly the export's transitions (see the module docstring)."""
  from d3rlpy.dataset import Episode
  ends = np.flatnonzero(np.logical_or(data["terminals"], data["truncations"]))
  if ends.size == 0 or ends[-1] != data["rewards"].shape[0] - 1:
    raise ValueError("the export's last transition ends no episode; re-export it.")
  discrete = bool(data["discrete"])
  episodes, start = [], 0
  for end in ends:
    sl = slice(start, end + 1)
    obs = data["observations"][sl]
    actions = data["actions"][sl].reshape(end + 1 - start, -1)
    if discrete:
      actions = actions.astype(np.int64)
    rewards = data["rewards"][sl].astype(np.float32).reshape(-1, 1)
    terminated = bool(data["terminals"][end])
    if not terminated:
      # One more observation (the final next one) with a dummy action and reward: d3rlpy drops
      # the last step of an unterminated episode, which is then this padding row.
      obs = np.concatenate([obs, data["next_observations"][end][None]])
      actions = np.concatenate([actions, np.zeros_like(actions[:1])])
      rewards = np.concatenate([rewards, np.zeros_like(rewards[:1])])
    episodes.append(Episode(observations=obs.astype(np.float32), actions=actions,
                            rewards=rewards, terminated=terminated))
    start = end + 1
  return episodes


def build(algo: str, data, hidden, overrides: dict):
  import d3rlpy
  name, settings = ALGOS[algo]
  settings = {**settings, **overrides}
  encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(hidden))
  if algo in ACTOR_CRITIC:
    settings.update(actor_encoder_factory=encoder, critic_encoder_factory=encoder)
  else:
    settings.update(encoder_factory=encoder)
  if algo not in DISCRETE:
    settings["action_scaler"] = d3rlpy.preprocessing.MinMaxActionScaler(
        minimum=np.asarray(data["action_low"], np.float32),
        maximum=np.asarray(data["action_high"], np.float32))
  config = getattr(d3rlpy.algos, name)(**settings)
  return config.create(device="cpu:0"), config


def make_env(data, obs_keys=(), reward_scale: float = 1.0, reward_bias: float = 0.0):
  """The data's environment: dict observations flattened by obs_keys, rewards r·scale + bias."""
  import gymnasium as gym
  env_id = str(data["env_id"])
  env_kwargs = json.loads(str(data["env_kwargs"])) if "env_kwargs" in data else {}
  if env_id not in gym.registry:
    import gymnasium_robotics  # its ids (PointMaze, AntMaze, ...) are registered on import.
    gym.register_envs(gymnasium_robotics)
  env = gym.make(env_id, **env_kwargs)
  if obs_keys:
    space = env.observation_space
    if not (isinstance(space, gym.spaces.Dict)
            and all(isinstance(space.spaces.get(k), gym.spaces.Box) for k in obs_keys)):
      raise SystemExit(f"--obs_keys={','.join(obs_keys)}: the peer flattens array-valued keys "
                       f"of a dict observation only; {env_id}'s observations are {space}.")
    spaces = [space[k] for k in obs_keys]
    flat = gym.spaces.Box(np.concatenate([np.ravel(s.low) for s in spaces]).astype(np.float32),
                          np.concatenate([np.ravel(s.high) for s in spaces]).astype(np.float32))
    env = gym.wrappers.TransformObservation(
        env, lambda obs: np.concatenate([np.ravel(obs[k]) for k in obs_keys]).astype(np.float32),
        flat)
  if (reward_scale, reward_bias) != (1.0, 0.0):
    env = gym.wrappers.TransformReward(env, lambda r: reward_scale * r + reward_bias)
  return env


def evaluate(algo, data, num_episodes: int, seed: int, obs_keys=()):
  """Returns [num_episodes] of the greedy policy, episode j reset with seed + j."""
  envs = [make_env(data, obs_keys) for _ in range(num_episodes)]
  obs = [env.reset(seed=seed + j)[0] for j, env in enumerate(envs)]
  returns = np.zeros(num_episodes)
  active = list(range(num_episodes))
  while active:
    actions = algo.predict(np.stack([np.asarray(obs[j], np.float32) for j in active]))
    still = []
    for j, action in zip(active, actions):
      obs[j], reward, terminated, truncated, _ = envs[j].step(action)
      returns[j] += float(reward)
      if not (terminated or truncated):
        still.append(j)
    active = still
  for env in envs:
    env.close()
  return returns


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", required=True)
  parser.add_argument("--algo", required=True, choices=sorted(ALGOS))
  parser.add_argument("--seed", type=int, required=True)
  parser.add_argument("--steps", type=int, required=True)
  parser.add_argument("--eval_every", type=int, required=True)
  parser.add_argument("--eval_episodes", type=int, default=10)
  parser.add_argument("--eval_seed", type=int, default=1_000_000)
  parser.add_argument("--hidden", default="256,256")
  parser.add_argument("--overrides", default="{}")
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--online_steps", type=int, default=0)
  parser.add_argument("--online_eval_every", type=int, default=1000)
  parser.add_argument("--offline_fraction", type=float, default=0.5)
  parser.add_argument("--online_env_seed", type=int, default=2_000_000)
  parser.add_argument("--obs_keys", default="", help="dict observation keys, comma-separated")
  parser.add_argument("--reward_scale", type=float, default=1.0)
  parser.add_argument("--reward_bias", type=float, default=0.0)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  args.obs_keys = tuple(k for k in args.obs_keys.split(",") if k)

  import d3rlpy
  import torch
  from d3rlpy.dataset import InfiniteBuffer, ReplayBuffer
  torch.set_num_threads(args.threads)
  d3rlpy.seed(args.seed)
  data = dict(np.load(args.data, allow_pickle=False))
  if bool(data["discrete"]) != (args.algo in DISCRETE):
    raise SystemExit(f"--algo={args.algo} does not fit a "
                     f"{'discrete' if bool(data['discrete']) else 'continuous'} dataset.")
  if args.online_steps and args.algo not in ACTOR_CRITIC:
    raise SystemExit(f"--online_steps is offered for {', '.join(ACTOR_CRITIC)}, not {args.algo}.")
  # An environment the peer cannot build or flatten fails here, before any training.
  make_env(data, args.obs_keys).close()
  hidden = [int(h) for h in args.hidden.split(",")]
  algo, config = build(args.algo, data, hidden, json.loads(args.overrides))
  kwargs = {}
  if bool(data["discrete"]):
    kwargs = dict(action_space=d3rlpy.ActionSpace.DISCRETE, action_size=int(data["num_actions"]))
  buffer = ReplayBuffer(InfiniteBuffer(), episodes=episodes_of(data), **kwargs)
  ref_min, ref_max = float(data["ref_min_score"]), float(data["ref_max_score"])
  start = time.time()
  tmp = args.out + ".part"

  def record(out, step, extra=None):
    returns = evaluate(algo, data, args.eval_episodes, args.eval_seed, args.obs_keys)
    out.write(json.dumps({
        "step": step, "return": float(returns.mean()),
        "normalized_score": float(np.mean(100 * (returns - ref_min) / (ref_max - ref_min))),
        "seconds": time.time() - start, **(extra or {})}) + "\n")
    out.flush()

  with open(tmp, "w") as out:
    out.write(json.dumps({"config": json.loads(config.serialize()), "d3rlpy": d3rlpy.__version__,
                          "torch": torch.__version__,
                          "transitions": buffer.transition_count}) + "\n")
    done = 0
    while done < args.steps:
      chunk = min(args.eval_every, args.steps - done)
      algo.fit(buffer, n_steps=chunk, n_steps_per_epoch=chunk, show_progress=False,
               save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
               experiment_name="peer", with_timestamp=False)
      done += chunk
      record(out, done, {"env_steps": 0} if args.online_steps and done == args.steps else None)
    if args.online_steps:
      online(algo, buffer, data, args, lambda step, env_steps: record(
          out, step, {"env_steps": env_steps}))
    out.write(json.dumps({"done": True, "seconds": time.time() - start}) + "\n")
  os.replace(tmp, args.out)  # a seed file exists only once its run has finished.


def online(algo, offline_buffer, data, args, record):
  """The online phase: d3rlpy's fit_online over a mixed buffer, `record` at every evaluation."""
  import d3rlpy
  from d3rlpy.dataset import InfiniteBuffer, MixedReplayBuffer, ReplayBuffer
  env = make_env(data, args.obs_keys, args.reward_scale, args.reward_bias)
  env.reset(seed=args.online_env_seed)  # fit_online's own resets then continue this stream
  env.action_space.seed(args.online_env_seed)
  online_buffer = ReplayBuffer(InfiniteBuffer(), env=env)
  buffer = MixedReplayBuffer(primary_replay_buffer=online_buffer,
                             secondary_replay_buffer=offline_buffer,
                             secondary_mix_ratio=args.offline_fraction)

  def callback(algo, epoch, env_steps):
    if env_steps % args.online_eval_every == 0 or env_steps == args.online_steps:
      record(args.steps + env_steps, env_steps)

  algo.fit_online(env, buffer, n_steps=args.online_steps, n_steps_per_epoch=args.online_steps,
                  update_interval=1, n_updates=1, random_steps=0, update_start_step=1,
                  show_progress=False,
                  save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
                  experiment_name="peer_online", with_timestamp=False, callback=callback)
  env.close()


if __name__ == "__main__":
  main()
