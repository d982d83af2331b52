"""cql_jax/configs/{atari,cartpole}.py: every variant builds, and its agent builds."""
import jax
import numpy as np
import pytest

from cql_jax.makers import cartpole as cartpole_data
from cql_jax.data import dopamine_replay
from cql_jax.discrete.agent import make_discrete_agent
from cql_jax.configs import atari, cartpole


@pytest.mark.parametrize("game", sorted(atari.GAMES))
@pytest.mark.parametrize("percent", sorted(atari.SETTINGS))
def test_atari_variants(game, percent):
  c = atari.get_config(f"{game}-{percent}")
  assert c.atari.setting in dopamine_replay.PAPER_SETTINGS
  assert c.agent.loss == "qrdqn" and c.agent.torso == "cnn"
  assert c.agent.cql.weight == (4.0 if percent == "1" else 1.0)
  assert c.batch_size == 32 and c.agent.lr == 5e-5 and c.agent.target_update_period == 2000
  assert c.eval_every % c.steps_per_chunk == 0
  assert c.num_steps % c.eval_every == 0
  baseline = atari.get_config(f"{game}-{percent}-rem")
  assert baseline.agent.loss == "rem" and baseline.agent.cql.weight == 0.0


def test_atari_rejects_bad_arguments_and_unknown_fields():
  for arg in ("pong", "pong-5", "tennis-1", "pong-1-c51"):
    with pytest.raises(ValueError):
      atari.get_config(arg)
  with pytest.raises(AttributeError):
    atari.get_config("pong-1").num_step = 1  # locked: typos fail loudly.


@pytest.mark.parametrize("kind", cartpole_data.KINDS)
def test_cartpole_variants_build_an_agent(kind):
  c = cartpole.get_config(kind)
  assert c.dataset_id == cartpole_data.dataset_id(kind) and c.agent.cql.weight > 0.0
  assert cartpole.get_config(f"{kind}-dqn").agent.cql.weight == 0.0
  assert c.num_steps % c.steps_per_chunk == 0
  agent = make_discrete_agent(c.agent, (4,), cartpole_data.NUM_ACTIONS)
  state = agent.init(jax.random.key(0))
  action = agent.act(state, np.zeros((3, 4), np.float32), jax.random.key(1), True)
  assert action.shape == (3,)
  with pytest.raises(ValueError):
    cartpole.get_config(f"{kind}-sac")
