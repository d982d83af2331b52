"""The entry point: user errors print one message (no traceback) and leave nothing behind."""
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

from cql_jax import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _train(args, minari_root, cwd=ROOT):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "MINARI_DATASETS_PATH": str(minari_root),
         "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def _one_message(proc, *needles):
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert proc.stderr.startswith("Error: "), proc.stderr[-3000:]
  for needle in needles:
    assert needle in proc.stderr, proc.stderr[-3000:]


def test_resolve_config_by_domain_name(tmp_path, monkeypatch):
  classic = (ROOT / "cql_jax" / "configs" / "classic.py").resolve()
  assert cli.resolve_config_arg("classic:medium") == f"{classic}:medium"
  assert cli.resolve_config_arg("locomotion:cql_jax/hopper-medium") == \
      f"{(ROOT / 'cql_jax/configs/locomotion.py').resolve()}:cql_jax/hopper-medium"
  # A package path launched from elsewhere (an installed user's working directory).
  monkeypatch.chdir(tmp_path)
  assert cli.resolve_config_arg("cql_jax/configs/classic.py:expert") == f"{classic}:expert"
  # Files that exist, unknown names and the shared base module pass unchanged.
  (tmp_path / "mine.py").write_text("")
  assert cli.resolve_config_arg("mine.py:x") == "mine.py:x"
  assert cli.resolve_config_arg("nosuchdomain:x") == "nosuchdomain:x"
  assert cli.resolve_config_arg("base") == "base"
  assert cli.resolve_config_flags(["--config", "classic:medium", "--seeds=0"]) == \
      ["--config", f"{classic}:medium", "--seeds=0"]


def test_relaunch_command_keeps_the_users_arguments():
  argv = ["/x/experiments/train.py", "--config=locomotion:hopper-medium",
          "--config.dataset_id=mujoco/hopper/simple-v0", "--seeds=0,1", "--workdir=runs/a b"]
  command = cli.relaunch_command(argv, ["--download"])
  assert shlex.split(command) == ["python", "-m", "experiments.train", *argv[1:], "--download"]
  assert cli.relaunch_command(["cql-jax-train", "--download", "--workdir=w"], ["--download"]) == \
      "cql-jax-train --workdir=w --download"


def test_bad_key_value_and_variant(tmp_path):
  base = ["--config=classic:medium", f"--workdir={tmp_path / 'run'}"]
  _one_message(_train([*base, "--config.agent.cql.wieght=3"], tmp_path),
               "Did you mean 'weight'", "Valid keys of config.agent.cql")
  _one_message(_train([*base, "--config.num_steps=many"], tmp_path),
               "--config.num_steps=many", "invalid literal for int()")
  _one_message(_train(["--config=classic:hard", f"--workdir={tmp_path / 'run'}"], tmp_path),
               "--config=classic:hard", "unknown classic variant 'hard'", "medium-expert")
  _one_message(_train(["--config=nosuch.py:x", f"--workdir={tmp_path / 'run'}"], tmp_path),
               "'nosuch.py' does not exist", "classic, control, kitchen, locomotion")
  assert not (tmp_path / "run").exists()
  verbose = _train([*base, "--config.num_steps=many", "--verbose"], tmp_path)
  assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_missing_dataset_prints_the_users_command_and_leaves_nothing(tmp_path):
  workdir = tmp_path / "runs" / "hopper"
  args = ["--config=locomotion:hopper-medium", "--config.dataset_id=mujoco/hopper/simple-v0",
          "--seeds=0,1", f"--workdir={workdir}", "--noprogress"]
  proc = _train(args, tmp_path / "minari")
  _one_message(proc, "not stored under")
  printed = [line.strip() for line in proc.stderr.splitlines()
             if line.strip().startswith("python -m experiments.train")]
  assert printed, proc.stderr
  assert shlex.split(printed[0]) == ["python", "-m", "experiments.train", *args, "--download"]
  # The failed start created the workdir for its lock and removed it again.
  assert not workdir.exists() and (tmp_path / "runs").is_dir()
  # A workdir the user made stays, empty: the relaunch is not refused by a leftover config.json.
  workdir.mkdir()
  _one_message(_train(args, tmp_path / "minari"), "not stored under")
  assert list(workdir.iterdir()) == []


def test_bad_data_and_a_workdir_that_is_a_file(pendulum_minari_root, tmp_path):
  # A discrete (CartPole) config on the continuous Pendulum dataset.
  proc = _train(["--config=cartpole:medium", "--config.dataset_id=cql_jax/pendulum/medium-v0",
                 f"--workdir={tmp_path / 'run'}", "--noprogress"], pendulum_minari_root)
  _one_message(proc, "cql_jax/pendulum/medium-v0")
  assert not (tmp_path / "run").exists()

  afile = tmp_path / "notes.txt"
  afile.write_text("mine")
  _one_message(_train(["--config=classic:medium", f"--workdir={afile}"], pendulum_minari_root),
               f"--workdir={afile} is a file")
  assert afile.read_text() == "mine"


def test_an_existing_run_prints_the_resume_command(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text("{}")
  args = ["--config=classic:medium", "--config.num_steps=4000", f"--workdir={workdir}"]
  proc = _train(args, tmp_path)
  _one_message(proc, "already holds a run")
  resume = proc.stderr.split("To continue it:\n", 1)[1].splitlines()[0].strip()
  assert shlex.split(resume) == ["python", "-m", "experiments.train", *args, "--resume"]
  assert (workdir / "config.json").read_text() == "{}" and sorted(os.listdir(workdir)) == ["config.json"]


def test_seeds_take_ranges():
  from cql_jax import cli as cli_module  # pylint: disable=import-outside-toplevel
  assert cli_module.parse_seeds(["0-3"]) == list(range(4))
  assert cli_module.parse_seeds(["5", "7-8"]) == [5, 7, 8]
  with pytest.raises(ValueError, match="range A-B"):
    cli_module.parse_seeds(["x"])


def test_a_workdir_made_by_another_process_of_the_group_meanwhile(tmp_path, monkeypatch):
  from cql_jax import runner
  workdir = tmp_path / "pod" / "run"
  real_mkdir = pathlib.Path.mkdir

  def another_process_wins(self, *args, **kwargs):
    real_mkdir(self, *args, **kwargs)
    if self == workdir:  # the other process's mkdir landed first, so this one's finds it there.
      raise FileExistsError(str(self))

  monkeypatch.setattr(pathlib.Path, "mkdir", another_process_wins)
  assert runner._make_workdir(workdir) is False
  assert workdir.is_dir() and list(workdir.iterdir()) == []
  monkeypatch.undo()

  (tmp_path / "afile").write_text("mine")
  with pytest.raises(NotADirectoryError, match="a part of its path is a file"):
    runner._make_workdir(tmp_path / "afile" / "run")
  assert (tmp_path / "afile").read_text() == "mine"
  assert runner._make_workdir(tmp_path / "fresh" / "run") is True
