"""Entry point in a checkout: the only module that reads flags (see cql_jax.cli).

  python -m experiments.train --config=cql_jax/configs/classic.py:medium-expert \
      --workdir=runs/pendulum-me --seeds=0,1,2,3 [--config.agent.cql.weight=10] [--resume]

An installed package has the same entry point as the `cql-jax-train` command.
"""
from cql_jax import cli

if __name__ == "__main__":
  cli.run()
