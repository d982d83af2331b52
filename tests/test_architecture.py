"""The layering in ARCHITECTURE.md, checked on the source: no module imports a layer above its own,
no modules import each other in a circle (even through an import inside a function), and the
import table in ARCHITECTURE.md is the code's."""
import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "cql_jax"
ARCHITECTURE = ROOT.parent / "ARCHITECTURE.md"

# Lower number = lower layer. A module may import its own layer or any lower one, never a higher.
LAYERS = {
    "types": 0, "scores": 0, "logs": 0,
    "data": 1, "tabular": 1, "hyperparams": 1,
    "continuous": 2, "discrete": 2,
    "agents": 3, "train": 3, "parallel": 3, "rollout": 3, "evaluation": 3, "envs": 3,
    "checkpoints": 3, "writers": 3, "workdir_lock": 3, "statistics": 3, "distributed": 3,
    "makers": 4,
    "configs": 5, "sweep": 5, "finetune": 5,
    "runner": 6, "selection": 6,
    "cli": 7,
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


def _module_names():
  return {dotted for dotted, _ in _modules()}


def _resolve(name: str, modules) -> str:
  """The module an imported name lives in: "cql_jax.data.Transition" -> "cql_jax.data"."""
  while name not in modules and "." in name:
    name = name.rsplit(".", 1)[0]
  return name


def import_graph(sources=None):
  """{module: {cql_jax modules it imports, anywhere in the file}} over every cql_jax module.

  sources: {dotted module: source text} to use instead of the files (tests plant edges here).
  """
  modules = _module_names()
  graph = {}
  for dotted, path in _modules():
    text = (sources or {}).get(dotted, path.read_text())
    tree = ast.parse(text)
    names = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        names.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names.update(f"{node.module}.{a.name}" for a in node.names)
    graph[dotted] = {_resolve(n, modules) for n in names if n.startswith("cql_jax.")}
    graph[dotted] -= {dotted, "cql_jax"}
  return graph


def circles(graph):
  """Each group of modules that reach one another through imports (a strongly connected
  component of more than one module), minus the ALLOWED edges; sorted lists."""
  edges = {m: {t for t in targets if t in graph and (m, ".".join(t.split(".")[:2])) not in ALLOWED}
           for m, targets in graph.items()}
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):  # Tarjan's algorithm; the graph is a few dozen modules deep at most.
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1:
        found.append(sorted(group))

  for v in sorted(edges):
    if v not in index:
      visit(v)
  return found


def test_no_import_circle():
  assert circles(import_graph()) == [], "modules that import each other (break the circle)"


def test_a_planted_circle_is_caught():
  """sweep calling back into the runner (as it once did, from inside a function) is a circle."""
  planted = (ROOT / "sweep.py").read_text() + (
      "\n\ndef run(*args):\n  from cql_jax import runner\n  return runner.train_and_evaluate(*args)\n")
  found = circles(import_graph({"cql_jax.sweep": planted}))
  assert any({"cql_jax.runner", "cql_jax.sweep"} <= set(group) for group in found), found


def _unit(dotted: str) -> str:
  return dotted.split(".")[1]


def import_table(graph) -> str:
  """The table ARCHITECTURE.md shows: per top-level module or package (highest layer first),
  the cql_jax modules it imports, anywhere in its files (a package's own modules left out)."""
  rows = {}
  for module, targets in graph.items():
    if module != "cql_jax":
      rows.setdefault(_unit(module), set()).update(
          t[len("cql_jax."):] for t in targets if _unit(t) != _unit(module))
  lines = ["| module (layer) | imports from cql_jax |", "|---|---|"]
  for unit in sorted(rows, key=lambda u: (-LAYERS[u], u)):
    lines.append(f"| `{unit}` ({LAYERS[unit]}) | {', '.join(sorted(rows[unit])) or '—'} |")
  return "\n".join(lines)


def test_architecture_md_shows_the_imports():
  text = ARCHITECTURE.read_text()
  match = re.search(r"<!-- imports -->\n(.*?)\n<!-- /imports -->", text, re.S)
  assert match, "ARCHITECTURE.md lost its <!-- imports --> table"
  expected = import_table(import_graph())
  assert match.group(1) == expected, (
      "ARCHITECTURE.md's import table differs from the code; replace it with:\n" + expected)
