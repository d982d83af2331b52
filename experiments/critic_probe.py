"""Can a continuous run's critic tell actions apart? Q at the policy's, the data's and the
box-centre action, against the critics' own disagreement, from one checkpoint.

For 4,096 transitions drawn from the run's dataset (seed 0), per member it prints, with Q the
minimum over the critic ensemble (what the actor and the Bellman target use):
  q_pi        mean Q(s, tanh(mean of π(s)))      the deterministic policy's action,
  q_centre    mean Q(s, centre of the action box) (zero torque on the usual symmetric box),
  q_data      mean Q(s, a) at the data's own action,
  q_best_unif mean over s of max Q over 64 uniform actions,
  spread      mean over s of the std of Q over those 64 uniform actions: the action signal,
  pi_wins     fraction of states where q_pi > q_centre,
  disagree    std over s of (critic 0 − critic 1) at the data's action: the critics' noise.
An action signal (spread) below the critics' disagreement means the minimum over critics ranks
actions by noise, and each Bellman backup through that minimum biases Q down by about
E|Q0 − Q1| / 2 = disagree / √(2π) (for a normal difference), i.e. by that over (1 − γ) at its
fixed point.

  PYTHONPATH=$PWD MINARI_DATASETS_PATH=$PWD/data/minari python -m experiments.critic_probe \\
      --workdir=runs/ip50k/dev/reacher/medium-replay/cql --step=50000
"""
from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS


def probe(workdir: str, step: int, num_states: int = 4096, num_uniform: int = 64):
  """{statistic: [M]} of the module docstring for the run at `workdir`, checkpoint `step`."""
  import jax
  import jax.numpy as jnp
  from cql_jax import agents, runner, selection
  from cql_jax.continuous import networks as cnet
  from cql_jax.data import buffer
  run = selection.load_run(workdir)
  if agents.is_discrete_config(run.config.agent):
    raise SystemExit(f"error: {workdir} is a discrete run; this probe reads continuous critics.")
  if step not in run.checkpoint_steps:
    raise SystemExit(f"error: {workdir} has no checkpoint at step {step}; it has "
                     f"{run.checkpoint_steps}.")
  c = run.config.agent
  dataset = runner.load_data(run.config)
  state, = selection.restore_states(run, agents.make_agent(c, dataset), [step])
  # The actions the critics were trained on: in [-1, 1], as the agent scales them.
  t = buffer.scale_actions(dataset.transitions, dataset.action_low, dataset.action_high)
  rng = np.random.default_rng(0)
  idx = rng.choice(len(t.obs), min(num_states, len(t.obs)), replace=False)
  obs = jnp.asarray(t.obs[idx], jnp.float32)
  a_data = jnp.asarray(t.action[idx], jnp.float32)
  uniform = jnp.asarray(rng.uniform(-1, 1, (num_uniform,) + a_data.shape), jnp.float32)
  actor = cnet.TanhGaussianActor(a_data.shape[-1], tuple(c.actor_hidden_sizes), c.log_std_min,
                                 c.log_std_max)
  critic = cnet.CriticEnsemble(int(c.num_critics), tuple(c.critic_hidden_sizes))

  def member(actor_params, critic_params):
    q = lambda a: critic.apply(critic_params, obs, a[:, None]).reshape(int(c.num_critics), -1)
    mean, _ = actor.apply(actor_params, obs)
    q_data = q(a_data)
    q_unif = jax.vmap(lambda a: q(a).min(0))(uniform)            # [U, B]
    q_pi, q_centre = q(jnp.tanh(mean)).min(0), q(jnp.zeros_like(a_data)).min(0)
    return {"q_pi": q_pi.mean(), "q_centre": q_centre.mean(), "q_data": q_data.min(0).mean(),
            "q_best_unif": q_unif.max(0).mean(), "spread": q_unif.std(0).mean(),
            "pi_wins": (q_pi > q_centre).mean(),
            # A single critic has no one to disagree with.
            "disagree": jnp.std(q_data[0] - q_data[1]) if len(q_data) > 1 else jnp.nan}

  out = jax.jit(jax.vmap(member))(state.actor_params, state.critic_params)
  return {k: np.asarray(v) for k, v in out.items()}, run.members


def main(argv):
  del argv
  stats, members = probe(FLAGS.workdir, FLAGS.step)
  for m, name in enumerate(members):
    print(name, " ".join(f"{k} {v[m]:.3f}" for k, v in stats.items()))
  print("mean", " ".join(f"{k} {v.mean():.3f}" for k, v in stats.items()))


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "A continuous run directory (experiments.train layout).")
  flags.DEFINE_integer("step", None, "Checkpoint step to probe.")
  flags.mark_flags_as_required(["workdir", "step"])
  app.run(main)
