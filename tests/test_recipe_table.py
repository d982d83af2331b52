"""experiments/recipe_table.py: the recipe drivers' markdown table and the files it goes to."""
import json

from experiments import recipe_table


def test_cells_are_mean_and_population_std_and_gaps_are_dashes():
  rows = {("reacher", "expert"): {"behaviour": 50.04, "cql": [1.0, 2.0, 6.0]},
          ("cartpole-dqn", "medium-replay"): {"bc": [-3.0, 3.0]}}
  lines = recipe_table.markdown(rows, ["cql", "bc"]).split("\n")
  assert lines[:2] == ["| dataset | behaviour | cql | bc |", "|---|---:|---:|---:|"]
  # cql: mean 3, population std sqrt(((1-3)^2 + (2-3)^2 + (6-3)^2) / 3) = sqrt(14/3) = 2.16.
  assert lines[2] == "| reacher expert | 50.0 | 3.0 ± 2.2 | — |"
  # bc: mean 0, std 3; no behaviour score (a partly collected split).
  assert lines[3] == "| cartpole-dqn medium-replay | — | — | 0.0 ± 3.0 |"
  assert len(lines) == 4


def test_publish_prints_and_writes_the_table_and_its_numbers(tmp_path, capsys):
  (tmp_path / "dev").mkdir()
  out = recipe_table.publish("| t |", tmp_path, "dev", "table.json", {"a b": {"cql": [1.0]}})
  assert out == tmp_path / "dev" / "table.md" and out.read_text() == "| t |\n"
  assert json.loads((tmp_path / "dev" / "table.json").read_text()) == {"a b": {"cql": [1.0]}}
  assert capsys.readouterr().out == "| t |\n"
