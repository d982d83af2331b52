"""The layering in ARCHITECTURE.md, checked on the source: no module imports a layer above its own."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "cql_jax"

# Lower number = lower layer. A module may import its own layer or any lower one, never a higher.
LAYERS = {
    "types": 0, "scores": 0,
    "data": 1, "tabular": 1, "hyperparams": 1,
    "continuous": 2, "discrete": 2,
    "agents": 3, "train": 3, "parallel": 3, "rollout": 3, "evaluation": 3, "envs": 3,
    "checkpoints": 3, "writers": 3, "workdir_lock": 3, "statistics": 3,
    "makers": 4,
    "configs": 5, "runner": 5, "finetune": 5, "sweep": 5, "selection": 5,
    "cli": 6,
}


# The one sanctioned upward edge: the user's door `OfflineDataset.from_arrays` is a classmethod on
# the container, implemented (and imported lazily, inside the method) by the data layer.
ALLOWED = {("cql_jax.types", "cql_jax.data")}


def _layer_of(dotted: str):
  parts = dotted.split(".")
  if parts[0] != "cql_jax" or len(parts) < 2:
    return None
  return LAYERS.get(parts[1])


def _imports(path: pathlib.Path):
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == "cql_jax":
        for alias in node.names:
          yield node.lineno, f"cql_jax.{alias.name}"
      else:
        yield node.lineno, node.module


def _modules():
  for path in sorted(ROOT.rglob("*.py")):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    dotted = ".".join(rel.parts)
    if dotted.endswith(".__init__"):
      dotted = dotted[: -len(".__init__")]
    yield dotted, path


def test_every_package_has_a_layer():
  missing = {d.split(".")[1] for d, _ in _modules() if d != "cql_jax" and _layer_of(d) is None}
  assert not missing, f"add these to LAYERS (and ARCHITECTURE.md): {sorted(missing)}"


@pytest.mark.parametrize("dotted,path", list(_modules()), ids=lambda x: str(x))
def test_no_upward_import(dotted, path):
  if dotted == "cql_jax":  # the package's flat re-export list sits above everything.
    return
  own = _layer_of(dotted)
  bad = [(line, name) for line, name in _imports(path)
         if _layer_of(name) is not None and _layer_of(name) > own
         and (dotted, ".".join(name.split(".")[:2])) not in ALLOWED]
  assert not bad, f"{dotted} (layer {own}) imports upward: {bad}"


def test_data_never_imports_makers_or_agents():
  for dotted, path in _modules():
    if dotted.startswith("cql_jax.data"):
      names = [n for _, n in _imports(path)]
      assert not [n for n in names if n.startswith(("cql_jax.makers", "cql_jax.continuous",
                                                    "cql_jax.discrete", "cql_jax.runner"))], dotted
