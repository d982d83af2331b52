"""Quiet logs by default: a run prints its own progress and results, not other libraries' INFO.

Through absl (every script and the entry point) each INFO line of JAX, orbax and absl would
otherwise reach the terminal: JAX's probing for a TPU at start-up, a dozen orbax lines per
checkpoint. `quiet()` keeps warnings and errors from everywhere and the INFO lines of cql_jax
itself (a dataset made, a run resumed); the scripts' --library_logs flag brings the rest back.
"""
from __future__ import annotations

import logging

FLAG_HELP = "Also show the INFO logs of JAX, orbax and absl (hidden by default)."


class _OwnInfoOnly(logging.Filter):
  """Passes WARNING and above, and cql_jax's own INFO and below."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name.split(".")[0] == "cql_jax"


_FILTER = _OwnInfoOnly()


def quiet(library_logs: bool = False) -> None:
  """Hides other libraries' INFO lines from absl's handler (library_logs=True shows them).

  Call it from a script's main, after absl has installed its handler (app.run does). The
  handler's level is left as absl's --verbosity set it, so -v still turns on DEBUG lines.
  """
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  handler = absl_logging.get_absl_handler()
  handler.removeFilter(_FILTER)
  if not library_logs:
    handler.addFilter(_FILTER)
  # cql_jax's progress lines are INFO: let them through Python's logger levels too.
  logging.getLogger("cql_jax").setLevel(logging.INFO)
