"""The training entry point (`python -m experiments.train` in a checkout, `cql-jax-train` installed).

  cql-jax-train --config=classic:medium-expert --workdir=runs/pendulum-me --seeds=0,1,2,3 \
      [--config.agent.cql.weight=10] [--resume] [--download] [--verbose]
  # A sweep: settings x seeds in one compiled program (cql_jax.sweep).
  cql-jax-train ... --sweep=agent.cql.weight=1,5,10 --sweep=agent.critic_lr=3e-4,1e-3   # 3 x 2 grid
  cql-jax-train ... --sweep_zip=agent.cql.weight=1,5 --sweep_zip=agent.critic_lr=3e-4,1e-3  # zipped

--config takes a config file ("path/to/file.py:variant") or a domain of the package's own
configs by name ("classic:medium", "locomotion:hopper-medium"); a path under cql_jax/configs/
that does not exist in the working directory is read from the installed package too.

An error the user can fix (a bad key or value, an unknown variant, a missing dataset, bad data, a
workdir in use or that is a file) prints as one message, with the command to relaunch where
there is one, and exits with status 1; --verbose shows the traceback instead.
"""
from __future__ import annotations

import os
import pathlib
import re
import shlex
import sys
import traceback
from typing import List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from cql_jax import logs
from cql_jax import workdir_lock
from cql_jax.envs import robotics

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Domain config: a file ('cql_jax/configs/locomotion.py:hopper-medium') or a "
    "package domain by name ('locomotion:hopper-medium').", lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (config, metrics, checkpoints, results).")
flags.DEFINE_list("seeds", ["0"], "Comma-separated seeds or ranges (0,1,2 or 0-7), trained together "
                  "in one vmapped program.")
flags.DEFINE_bool("resume", False, "Continue the run in --workdir from its latest checkpoint.")
flags.DEFINE_bool("download", False, "Let Minari download a dataset that is not stored locally.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_multi_string("sweep", [], "Sweep axis KEY=V1,V2,... (e.g. agent.cql.weight=1,5,10); "
                          "several --sweep axes form a grid (their product).")
flags.DEFINE_multi_string("sweep_zip", [], "Sweep axis KEY=V1,V2,... stepped together with the "
                          "other --sweep_zip axes (equal lengths), crossed with --sweep.")
flags.DEFINE_bool("verbose", False, "On an error, show the full traceback, not just the message.")
flags.DEFINE_bool("library_logs", False, logs.FLAG_HELP)
flags.mark_flags_as_required(["config", "workdir"])

CONFIGS_DIR = pathlib.Path(__file__).resolve().parent / "configs"
_CONFIG_PREFIX = "cql_jax/configs/"
# Errors whose message tells the user what to change; anything else is a bug and keeps its
# traceback.
USER_ERRORS = (ValueError, KeyError, OSError, FloatingPointError, ImportError,
               workdir_lock.WorkdirLockedError, robotics.EnvironmentUnavailable)
# While parsing flags, a TypeError is ml_collections refusing a value of the wrong type.
# ml_collections reports an unknown nested key as an AttributeError.
_PARSE_ERRORS = (*USER_ERRORS, TypeError, AttributeError, flags.Error)


def parse_seeds(items: Sequence[str]) -> List[int]:
  """["0", "2-4"] -> [0, 2, 3, 4]: integers and inclusive ranges A-B."""
  seeds = []
  for item in items:
    first, sep, last = item.strip().partition("-")
    try:
      seeds.extend(range(int(first), int(last) + 1) if sep and first else [int(item)])
    except ValueError:
      raise ValueError(f"--seeds item {item!r} is not an integer or a range A-B (e.g. 0-7).") from None
  return seeds


def resolve_config_arg(value: str) -> str:
  """'classic:medium' -> '<package>/configs/classic.py:medium'; paths that exist pass unchanged.

  A 'cql_jax/configs/<domain>.py[:arg]' path missing from the working directory (an installed
  package, launched elsewhere) is read from the package.
  """
  path, sep, arg = value.partition(":")
  if path.endswith(".py"):
    if pathlib.Path(path).exists() or not path.startswith(_CONFIG_PREFIX):
      return value
    candidate = CONFIGS_DIR / path[len(_CONFIG_PREFIX):]
  elif "/" not in path and path:
    candidate = CONFIGS_DIR / f"{path}.py"
  else:
    return value
  if not candidate.exists() or candidate.name in ("base.py", "__init__.py"):
    return value  # let the loader report the missing file under the name the user gave.
  return f"{candidate}{sep}{arg}"


def resolve_config_flags(argv: Sequence[str]) -> List[str]:
  """argv with every --config value passed through resolve_config_arg."""
  out, it = [], iter(argv)
  for token in it:
    if token.startswith("--config="):
      token = "--config=" + resolve_config_arg(token[len("--config="):])
    elif token == "--config":
      out.append(token)
      token = resolve_config_arg(next(it, ""))
    out.append(token)
  return out


def program(argv0: str) -> str:
  """How the user launched us, for printed commands (a multi-process launcher names itself)."""
  launcher = os.environ.get("CQL_JAX_LAUNCH_COMMAND")
  if launcher:
    return launcher
  name = pathlib.Path(argv0).name
  return name if name.startswith("cql-jax") else "python -m experiments.train"


def relaunch_command(argv: Sequence[str], add: Sequence[str] = ()) -> str:
  """The user's own command line (overrides and --seeds kept) plus the flags in `add`."""
  args = [a for a in argv[1:] if a not in add]
  return " ".join([program(argv[0]), *map(shlex.quote, args), *add])


def domains() -> List[str]:
  """The package's config domains, e.g. ["adroit", "antmaze", ...]."""
  return sorted(p.stem for p in CONFIGS_DIR.glob("*.py") if p.stem not in ("base", "__init__"))


def _message(error: BaseException) -> str:
  if isinstance(error, KeyError) and error.args:
    return str(error.args[0])  # str(KeyError) wraps the message in quotes.
  text = str(error) or type(error).__name__
  missing = re.search(r"Failed loading config file.*?Attempted \[Relative path\]:\s*(\S+)", text,
                      re.S)
  if missing:
    return (f"config file '{missing.group(1)}' does not exist. Pass a config file "
            "(--config=path/to/file.py:variant) or one of the package's domains by name: "
            f"{', '.join(domains())} (e.g. --config=classic:medium).")
  # ml_collections puts the config file's own traceback inside the flag error: keep its last
  # line, the exception the config raised.
  head, sep, trace = text.partition("Traceback (most recent call last):")
  if sep:
    last = [line for line in trace.strip().splitlines() if line.strip()][-1]
    flag = head.split(": Error whilst parsing", 1)[0].strip()
    return f"{flag}: {re.sub(r'^[A-Za-z_.]*(Error|Exception): ', '', last)}"
  return text


def explain(error: BaseException, argv: Sequence[str]) -> str:
  """The message to print for `error`, with the relaunch commands it names rebuilt from argv."""
  text = _message(error)
  for token in argv:  # name configs the way the user typed them, not as resolved.
    if token.startswith("--config="):
      value = token[len("--config="):]
      text = text.replace(resolve_config_arg(value), value)
  command = re.compile(r"^(\s*)python -m experiments\.train .*--download\s*$", re.M)
  if command.search(text):
    text = command.sub(lambda m: m.group(1) + relaunch_command(argv, ["--download"]), text)
  if isinstance(error, FileExistsError) and "--resume" in text:
    text += "\nTo continue it:\n  " + relaunch_command(argv, ["--resume"])
  return text


def fail(error: BaseException, argv: Sequence[str]) -> None:
  print(f"Error: {explain(error, argv)}\n(--verbose shows the traceback)", file=sys.stderr)
  sys.exit(1)


def parse_flags(argv):
  """absl parsing with --config domain names resolved; user errors become one message.

  An override of an unknown config key lists the valid keys (ml_collections reports it as
  "Unknown command line flag" or a traceback, depending on the depth).
  """
  original, argv = list(argv), resolve_config_flags(argv)
  try:
    return FLAGS(argv)
  except _PARSE_ERRORS as error:
    if "--verbose" in argv:
      raise
    message = _unknown_key_message(argv)
    if message is None:
      fail(error, original)
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(1)


def _unknown_key_message(argv) -> Optional[str]:
  config_args = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
  if not config_args:
    return None
  from cql_jax.configs import base
  try:
    config = base.load_config_file(config_args[-1])
  except Exception:  # pylint: disable=broad-except
    return None  # the config file itself is broken: the original error says how.
  unknown = base.unknown_override_keys(config, argv)
  return "\n".join(base.unknown_key_message(config, key) for key in unknown) or None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logs.quiet(FLAGS.library_logs)  # the run's own progress and results, not JAX's INFO lines.
  from cql_jax import parallel  # local: flag parsing and --help stay fast.
  parallel.maybe_initialize_distributed()  # before anything touches a device.
  from cql_jax import runner
  from cql_jax import sweep
  try:
    config = FLAGS.config  # a config file that failed to load raises here.
    seeds = parse_seeds(FLAGS.seeds)
    grid = sweep.Grid.from_flags(FLAGS.sweep, FLAGS.sweep_zip)
    result = runner.train_and_evaluate(config, FLAGS.workdir, seeds, FLAGS.resume,
                                       download=FLAGS.download, progress=FLAGS.progress, grid=grid)
  except Exception as error:  # pylint: disable=broad-except
    from cql_jax import distributed
    if distributed.is_multi_process() and not FLAGS.verbose:
      # One message, then out without JAX's shutdown barrier, which a dead process would hold
      # up to the heartbeat timeout before aborting with the coordination service's log.
      lost = distributed.is_lost_process(error)
      if lost:
        message = distributed.lost_process_message(error, relaunch_command(sys.argv, ["--resume"]))
      elif isinstance(error, USER_ERRORS):
        message = f"{explain(error, sys.argv)}\n(--verbose shows the traceback)"
      else:
        message = traceback.format_exc()
      distributed.exit_now(f"Error: {message}", wait_for_others=not lost)
    if FLAGS.verbose or not isinstance(error, USER_ERRORS):
      raise
    fail(error, sys.argv)
  logging.info("final: %s", result.results["final_mean"])
  from cql_jax import scores  # pylint: disable=import-outside-toplevel
  print(scores.comparison_text(result.results["final_mean"], result.results["dataset_score"]))
  if result.results.get("sweep"):
    print("sweep, final scores per setting over seeds:\n" + sweep.format_table(result.results["sweep"]))


def run():
  """Console-script entry point."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
