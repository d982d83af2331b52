"""The table the recipe drivers (continuous_recipes, discrete_recipes) print and write.

One row per dataset, (env, kind) -> {"behaviour": the data's own normalized score, column:
[final normalized score per seed]}; a cell reads mean ± std over the seeds, "—" where a run
or the behaviour score is missing (a driver that only collects may have run part of a split).
"""
from __future__ import annotations

import json
import pathlib
from typing import Dict, Sequence, Tuple

import numpy as np

Rows = Dict[Tuple[str, str], dict]


def markdown(rows: Rows, columns: Sequence[str]) -> str:
  """A markdown table: dataset, behaviour score, then `columns` in order."""
  lines = ["| dataset | behaviour | " + " | ".join(columns) + " |",
           "|---|---:|" + "---:|" * len(columns)]
  for (env, kind), row in rows.items():
    cells = [f"{np.mean(row[c]):.1f} ± {np.std(row[c]):.1f}" if c in row else "—"
             for c in columns]
    behaviour = f"{row['behaviour']:.1f}" if "behaviour" in row else "—"
    lines.append(f"| {env} {kind} | {behaviour} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def publish(text: str, workdir, split: str, json_name: str, payload) -> pathlib.Path:
  """Prints the table `text` and writes it to <workdir>/<split>/table.md, with `payload` as
  JSON in <workdir>/<split>/<json_name> beside it (the numbers behind the table, for scripts)."""
  print(text)
  out = pathlib.Path(workdir) / split / "table.md"
  out.write_text(text + "\n")
  (out.parent / json_name).write_text(json.dumps(payload, indent=1))
  return out
