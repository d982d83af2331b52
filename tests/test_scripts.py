"""Every script in experiments/ starts both ways a user runs it (python -m experiments.X, and
python experiments/X.py from anywhere), answers --help without importing JAX, and no script's
name hides a standard-library module from the interpreter that runs it."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.py")
                 if re.search(r'^if __name__ == "__main__":', p.read_text(), re.M))
# Imports that would make --help slow (seconds each on a 2-core machine).
HEAVY = ("jax", "flax", "optax", "orbax", "matplotlib", "minari", "gymnasium", "tensorboardX")


def test_no_script_shadows_the_standard_library():
  # A script's folder is sys.path[0] when it runs by path, so its siblings' names win over the
  # standard library's (experiments/select.py once broke every script through `selectors`).
  for folder in ("experiments", "benchmarks", "."):
    names = {p.stem for p in (ROOT / folder).glob("*.py")}
    assert not names & set(sys.stdlib_module_names), (folder, names & set(sys.stdlib_module_names))


def test_the_scripts_are_found():
  assert {"train", "demo", "select_policy", "compare", "plot"} <= set(SCRIPTS), SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_both_ways_without_jax(script, tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  ways = {"-m": ([sys.executable, "-X", "importtime", "-m", f"experiments.{script}", "--help"],
                 ROOT),
          "path": ([sys.executable, "-X", "importtime", str(ROOT / "experiments" / f"{script}.py"),
                    "--help"], tmp_path)}  # by path, from another directory.
  docstring = (ROOT / "experiments" / f"{script}.py").read_text().split('"""')[1].strip()
  for way, (command, cwd) in ways.items():
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, (way, proc.stderr[-2000:])
    # absl prints the module docstring and the script's own flags, then exits (argparse: usage).
    assert docstring.splitlines()[0] in proc.stdout or proc.stdout.startswith("usage:"), (
        way, proc.stdout[:500])
    flag = "--config" if script == "train" else "  --"  # train: the entry point's own flags.
    assert flag in proc.stdout, (way, "flags not listed", proc.stdout[-500:])
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert not imported & set(HEAVY), (way, sorted(imported & set(HEAVY)))



def test_logs_are_quiet_by_default_and_the_flag_brings_them_back():
  """Through absl's handler: other libraries' INFO lines are dropped (JAX's TPU probe, orbax's
  checkpoint lines), cql_jax's own progress and everyone's warnings pass; --library_logs
  (quiet(True)) passes everything again."""
  import logging

  from absl import logging as absl_logging

  from cql_jax import logs
  handler = absl_logging.get_absl_handler()
  record = lambda name, level: logging.LogRecord(name, level, __file__, 1, "m", None, None)
  lines = {"jax._src.xla_bridge": logging.INFO, "orbax.checkpoint": logging.INFO,
           "absl": logging.INFO, "cql_jax.makers.pendulum": logging.INFO,
           "orbax.checkpoint ": logging.WARNING}
  try:
    logs.quiet()
    shown = {n for n, level in lines.items() if handler.filter(record(n, level))}
    assert shown == {"cql_jax.makers.pendulum", "orbax.checkpoint "}
    logs.quiet(library_logs=True)
    assert all(handler.filter(record(n, level)) for n, level in lines.items())
  finally:
    logs.quiet(library_logs=True)  # leave absl's handler as other tests expect it.


def test_setup_py_is_a_shim_over_pyproject():
  import tomllib
  version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
  proc = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == version, proc
