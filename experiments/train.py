"""Entry point in a checkout: the only module that reads flags (see cql_jax.cli).

  python -m experiments.train --config=cql_jax/configs/classic.py:medium-expert \
      --workdir=runs/pendulum-me --seeds=0,1,2,3 [--config.agent.cql.weight=10] [--resume]

An installed package has the same entry point as the `cql-jax-train` command.
"""
if __name__ == "__main__" and not __package__:  # run by path: import from the checkout's root,
  import os, sys  # not from experiments/ (python experiments/X.py works as python -m does).
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from absl import flags

from cql_jax import cli

if __name__ == "__main__":
  flags.adopt_module_key_flags(cli)  # --help lists the entry point's flags, not only --helpfull.
  cli.run()
