"""README.md against the code, so a README that drifts from it fails here.

- The library snippet runs as written, with its sizes scaled down (each substitution must still
  find its text, so an edited snippet fails until this test is told about it).
- "Your own data" runs on arrays made here.
- Every `python -m experiments.X` command names a script, flags that script defines, a config
  that loads, `--config.*` keys that config has and sweeps that plan (nothing trains).
- Every `cql_jax.…` name the README mentions resolves, and every repository path it names exists.
"""
import importlib
import math
import os
import pathlib
import re
import shlex

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language: str):
  return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def snippet(marker: str) -> str:
  found = [b for b in blocks("python") if marker in b]
  assert len(found) == 1, f"README has {len(found)} python blocks containing {marker!r}"
  return found[0]


def scaled(code: str, substitutions) -> str:
  for old, new in substitutions:
    assert code.count(old) == 1, f"the README snippet no longer contains {old!r} once"
    code = code.replace(old, new)
  return code


def test_library_snippet_runs(tmp_path, monkeypatch):
  monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
  code = scaled(snippet("make_train_chunk"), [
      ("pendulum.ensure_pendulum_datasets()",
       'pendulum.ensure_pendulum_datasets(kinds=("medium-expert",), num_episodes=4, '
       "ref_episodes=4)"),
      ("classic.pendulum_agent_config()", "classic.pendulum_agent_config(16)"),
      ("num_steps=1000", "num_steps=20"),
      ("range(10)", "range(2)"),
      ("evaluate_agent(agent, state, dataset)", "evaluate_agent(agent, state, dataset, "
       "num_episodes=2)"),
  ])
  printed = []
  exec(compile(code, "README.md", "exec"), {"print": printed.append})  # pylint: disable=exec-used
  assert len(printed) == 1 and math.isfinite(float(printed[0])), printed


def test_own_data_snippet_runs():
  import cql_jax  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  episodes, length = 2, 5
  arrays = {
      "obs": rng.normal(size=(episodes * (length + 1), 3)).astype(np.float32),
      "actions": rng.uniform(-2, 2, size=(episodes * length, 1)).astype(np.float32),
      "rewards": rng.normal(size=episodes * length).astype(np.float32),
      "terminals": np.zeros(episodes * length, bool),
      "truncations": np.tile(np.r_[np.zeros(length - 1, bool), True], episodes),
  }
  scope = {"cql_jax": cql_jax, **arrays}
  exec(compile(snippet("from_arrays"), "README.md", "exec"), scope)  # pylint: disable=exec-used
  ds = scope["ds"]
  assert ds.size == episodes * length and list(ds.action_high) == [2.0]  # Pendulum's bounds


# --------------------------------------------------------------------------------------------
# Commands.
# --------------------------------------------------------------------------------------------


def commands():
  """Each `python -m experiments.X ...` command of the bash blocks, as argv. A launcher's
  `X [its flags] -- [the entry point's]` counts as two commands."""
  out = []
  for block in blocks("bash"):
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
      argv = shlex.split(line, comments=True)
      if argv[:2] == ["python", "-m"]:
        argv = argv[2:]
        if "--" in argv:
          cut = argv.index("--")
          module = next((a.split("=", 1)[1] for a in argv[:cut] if a.startswith("--module=")),
                        "experiments.train")
          out.append([module, *argv[cut + 1:]])
          argv = argv[:cut]
        out.append(argv)
  return out


def defined_flags(script: str) -> set:
  """Flag names the script defines: in its own file, the experiments modules and cql_jax.cli it
  imports (budget's shared flags, the entry point's), and absl's own."""
  source = (ROOT / "experiments" / f"{script}.py").read_text()
  files = [source]
  for module in re.findall(r"^from experiments import (\w+)", source, re.M):
    files.append((ROOT / "experiments" / f"{module}.py").read_text())
  if re.search(r"^from cql_jax import cli", source, re.M):
    files.append((ROOT / "cql_jax" / "cli.py").read_text())
  names = {"help", "helpfull", "verbosity", "v"}
  for text in files:
    names |= set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", text))
  return names


def config_of(spec: str):
  from cql_jax.configs import base  # pylint: disable=import-outside-toplevel
  if ".py" not in spec:  # a package domain by name, as the entry point reads it.
    name, _, variant = spec.partition(":")
    spec = f"{ROOT / 'cql_jax' / 'configs' / name}.py:{variant}"
  elif not spec.startswith("/"):
    spec = str(ROOT / spec)
  return base.load_config_file(spec)


def test_the_readme_has_commands():
  scripts = {argv[0] for argv in commands()}
  assert {"experiments.train", "experiments.select_policy", "experiments.plot"} <= scripts


@pytest.mark.parametrize("argv", commands(), ids=lambda a: " ".join(a)[:60])
def test_command_matches_the_code(argv):
  from cql_jax import sweep  # pylint: disable=import-outside-toplevel
  from cql_jax.cli import parse_seeds  # pylint: disable=import-outside-toplevel
  module, args = argv[0], argv[1:]
  assert module.startswith("experiments.")
  script = module.split(".", 1)[1]
  assert (ROOT / "experiments" / f"{script}.py").exists(), module
  flags = defined_flags(script)
  for arg in args:
    assert arg.startswith("--"), arg
    name = arg[2:].split("=", 1)[0]
    if name.startswith("config."):
      continue
    assert name in flags or (name.startswith("no") and name[2:] in flags), (module, name)
  values = {}
  for arg in args:
    name, _, value = arg[2:].partition("=")
    values.setdefault(name, []).append(value)
  if "config" in values:
    config = config_of(values["config"][0])
    from cql_jax.configs import base  # pylint: disable=import-outside-toplevel
    assert not base.unknown_override_keys(config, args), args
    if "sweep" in values or "sweep_zip" in values:
      grid = sweep.Grid.from_flags(values.get("sweep", []), values.get("sweep_zip", []))
      seeds = parse_seeds(values["seeds"][0].split(",")) if "seeds" in values else [0]
      assert sweep.plan(config, grid, seeds).num_members == len(grid.settings()) * len(seeds)


# --------------------------------------------------------------------------------------------
# Names and paths.
# --------------------------------------------------------------------------------------------


def resolve(dotted: str):
  parts = dotted.split(".")
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ModuleNotFoundError:
      continue
    for attr in parts[i:]:
      obj = getattr(obj, attr)
    return obj
  raise ModuleNotFoundError(dotted)


def test_every_cql_jax_name_resolves():
  names = sorted(set(re.findall(r"\bcql_jax(?:\.\w+)+", README)))
  assert "cql_jax.runner.train_and_evaluate" in names
  missing = []
  for name in names:
    try:
      resolve(name)
    except (AttributeError, ModuleNotFoundError):
      missing.append(name)
  assert not missing, f"README names what the code lacks: {missing}"


def test_every_repository_path_exists():
  quoted = re.findall(r"`([^`\s]+)`", README) + re.findall(r"\]\(([^)\s]+)\)", README)
  # Files and folders (dataset ids such as cql_jax/pendulum/medium-v0 look alike but are not).
  paths = {q for q in quoted if "/" in q or q.endswith(".md")}
  paths = {p for p in paths
           if re.fullmatch(r"(cql_jax|experiments|benchmarks|tests)/[\w./-]*|[\w-]+\.(md|py|toml)", p)
           and (p.endswith("/") or "." in p.rsplit("/", 1)[-1])}
  assert "cql_jax/configs/" in paths and "ARCHITECTURE.md" in paths, sorted(paths)
  missing = sorted(p for p in paths if not (ROOT / p).exists())
  assert not missing, f"README names files the repository lacks: {missing}"


def test_docs_and_messages_name_nothing_outside_the_repository():
  """A user has the repository only: no file of it may send them to notes kept beside it."""
  outside = ("REFERENCE.md", "../shared", "/work/", "shared/paper")
  skip = {".venv", ".peer-venv", "data", "runs", ".git", ".jax_cache", "__pycache__"}
  files = []
  for folder, subfolders, names in os.walk(ROOT):
    subfolders[:] = [d for d in subfolders if d not in skip and not d.startswith(".")]
    files += [pathlib.Path(folder) / n for n in names
              if n.endswith((".py", ".md", ".toml", ".txt", ".ini"))]
  files.remove(pathlib.Path(__file__).resolve())
  bad = [f"{p.relative_to(ROOT)}: {name}" for p in files for name in outside
         if name in p.read_text(errors="replace")]
  assert not bad, bad
