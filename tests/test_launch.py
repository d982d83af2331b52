"""experiments.launch on stand-in entry points (no JAX): the variables each process gets, and a
group that stops as a whole when one process dies."""
import json
import signal
import textwrap
import time

from experiments import launch

_ENTRY = textwrap.dedent("""
  import json, os, pathlib, signal, sys, time
  out, action = pathlib.Path(sys.argv[1]), sys.argv[2]
  index = int(os.environ["CQL_JAX_PROCESS_ID"])
  keys = ["CQL_JAX_COORDINATOR", "CQL_JAX_NUM_PROCESSES", "CQL_JAX_PROCESS_ID", "JAX_PLATFORMS",
          "XLA_FLAGS", "CQL_JAX_LAUNCH_COMMAND"]
  (out / f"{index}.json").write_text(json.dumps({k: os.environ.get(k) for k in keys}))
  if action == "die" and index == 1:
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)
  if action == "die":
    time.sleep(600)   # the others would wait for the dead one (a collective) far longer.
""")


def _entry(tmp_path, monkeypatch):
  (tmp_path / "fake_entry.py").write_text(_ENTRY)
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.setenv("PYTHONPATH", str(tmp_path))
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                     "--xla_force_host_platform_device_count=8")


def test_each_process_gets_the_coordinator_its_rank_and_its_devices(tmp_path, monkeypatch):
  _entry(tmp_path, monkeypatch)
  status = launch.launch([str(tmp_path), "ok"], 3, devices_per_process=2, module="fake_entry",
                         logdir=str(tmp_path / "logs"), launch_command="LAUNCH --")
  assert status == 0
  seen = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(3)]
  assert [s["CQL_JAX_PROCESS_ID"] for s in seen] == ["0", "1", "2"]
  assert {s["CQL_JAX_NUM_PROCESSES"] for s in seen} == {"3"}
  coordinators = {s["CQL_JAX_COORDINATOR"] for s in seen}
  assert len(coordinators) == 1 and coordinators.pop().startswith("127.0.0.1:")
  for s in seen:
    assert s["JAX_PLATFORMS"] == "cpu" and s["CQL_JAX_LAUNCH_COMMAND"] == "LAUNCH --"
    # The user's other XLA flags are kept; the device count is replaced, not appended.
    assert s["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2",
                                      "--xla_cpu_multi_thread_eigen=false"]


def test_one_killed_process_stops_the_group_with_one_message(tmp_path, monkeypatch, capsys):
  _entry(tmp_path, monkeypatch)
  started = time.time()
  status = launch.launch([str(tmp_path), "die"], 3, module="fake_entry",
                         logdir=str(tmp_path / "logs"), grace_seconds=5)
  assert time.time() - started < 60
  assert status == 128 + signal.SIGKILL
  err = capsys.readouterr().err
  assert err.count("was killed by SIGKILL") == 1, err
  assert "process 1 of 3" in err and "--resume" in err, err


def test_a_lost_process_in_a_background_thread_prints_no_traceback(monkeypatch, capsys):
  import threading
  import jax
  from cql_jax import distributed
  monkeypatch.setattr(distributed, "is_multi_process", lambda: True)
  seen = []
  hook = distributed.quiet_lost_process_in_threads(seen.append)

  def run(error):
    def target():
      raise error
    monkeypatch.setattr(threading, "excepthook", hook)
    thread = threading.Thread(target=target, name="save")
    thread.start()
    thread.join()

  run(jax.errors.JaxRuntimeError("UNKNOWN: Gloo AllGather failed: Connection reset by peer"))
  assert seen == [] and "Traceback" not in capsys.readouterr().err
  run(ValueError("a bug of ours"))  # not a lost process: the default hook reports it.
  assert [type(a.exc_value) for a in seen] == [ValueError]
