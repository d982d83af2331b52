"""RESULTS.md sections: replace one "## " section in place, and the setup sentences of a
section generated from the runs' own configs."""
from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any, Dict, Mapping


def write_section(path: str, heading: str, body: str) -> None:
  """Writes `heading` + `body` in place of the section that starts with `heading` (or appends).

  heading: the full line, e.g. "## Table 4: value over/under-estimation". The section
  runs to the next line starting with "## " or to the end of the file.
  """
  file = pathlib.Path(path)
  lines = file.read_text().splitlines() if file.exists() else []
  new = [heading, "", *body.strip("\n").splitlines(), ""]
  if heading in lines:
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    lines = lines[:start] + new + lines[end:]
  else:
    lines = lines + ([""] if lines and lines[-1] else []) + new
  # Written to a temporary file and renamed, so a failure never leaves RESULTS.md half-written.
  fd, tmp = tempfile.mkstemp(dir=file.parent or ".", prefix=f".{file.name}.")
  try:
    with os.fdopen(fd, "w") as f:
      f.write("\n".join(lines).rstrip("\n") + "\n")
    os.replace(tmp, file)
  except BaseException:
    os.unlink(tmp)
    raise


# ---------------------------------------------------------------------------
# Setup sentences generated from the runs' own configs (config.json "config"), so a RESULTS.md
# section says what the runs did rather than what a script's template assumed.
# ---------------------------------------------------------------------------


def _fmt(value) -> str:
  if isinstance(value, (list, tuple)):
    return "-".join(map(str, value)) if value else "none"
  if isinstance(value, float):
    return f"{value:g}"
  return str(value)


def _shared(values: Dict[str, Any]) -> str:
  """One value if every label has it, else "v1 (label, label) / v2 (label)"."""
  groups: Dict[str, list] = {}
  for label, v in values.items():
    groups.setdefault(json.dumps(v, sort_keys=True), []).append(label)
  if len(groups) == 1:
    return _fmt(next(iter(values.values())))
  return " / ".join(f"{_fmt(json.loads(v))} ({', '.join(labels)})" for v, labels in groups.items())


def trains_critic(agent: Mapping) -> bool:
  return agent.get("algorithm", "cql") != "bc"


def is_cql(agent: Mapping) -> bool:
  cql = agent.get("cql", {})
  return trains_critic(agent) and (cql.get("weight", 0) != 0 or cql.get("lagrange", False))


def describe_agent(label: str, agent: Mapping) -> str:
  """One sentence on what the method `label` is, read from its agent config."""
  if not trains_critic(agent):
    return f"{label}: the actor trained by the behaviour-cloning loss alone, no critic."
  critics = agent["num_critics"]
  if not is_cql(agent):
    return (f"{label}: SAC with α = 0 (no CQL term), the minimum over {critics} critics in the "
            "backup.")
  cql = agent["cql"]
  n = cql["num_samples"]
  soft_max = {
      "H": f"log ∫ exp Q importance-sampled from {n} uniform actions and {n} + {n} policy "
           "actions at s and s′",
      "rho": f"T·log E_{{a~π(s)}}[exp Q] from {n} samples of the current policy",
      "nonis": f"log-sum-exp of Q over {n} uniform and {n} + {n} policy actions, no importance "
               "weights",
      "pi": "E_{a~π}[Q]",
  }.get(cql["variant"], f"variant {cql['variant']}")
  data = " minus E_D[Q] on the data" if cql.get("maximize_data_term", True) else \
      " alone (Eq. 1, no data term)"
  if cql.get("lagrange"):
    weight = f"α′ tuned by dual descent towards the gap τ = {_fmt(cql['target_gap'])}"
  else:
    weight = f"α = {_fmt(cql['weight'])}"
  extras = [f"{critics} critics"]
  if agent.get("bc_steps"):
    extras.append(f"actor warm-started by BC for {agent['bc_steps']} steps")
  if agent.get("max_backup"):
    extras.append(f"max-backup over {agent['backup_num_samples']} actions")
  return f"{label}: CQL with {weight}; penalty {soft_max}{data}; {', '.join(extras)}."


def describe_setup(runs: Mapping[str, Mapping], seeds) -> str:
  """The training setup shared by `runs` (label -> run config), then one sentence per method.

  Hyperparameters that differ between methods are listed per method; the critic's (learning
  rate, γ, Polyak rate, backup) only for methods that train one.
  """
  agents = {label: run["agent"] for label, run in runs.items()}
  critics = {label: a for label, a in agents.items() if trains_critic(a)}
  first = next(iter(runs.values()))
  parts = [
      f"{_shared({l: r['num_steps'] for l, r in runs.items()})} gradient steps, {len(seeds)} "
      f"seeds ({', '.join(map(str, seeds))}) vmapped in one program, batch "
      f"{_shared({l: r['batch_size'] for l, r in runs.items()})}",
      f"actor {_shared({l: a['actor_hidden_sizes'] for l, a in agents.items()})} hidden units, "
      f"actor lr {_shared({l: a['actor_lr'] for l, a in agents.items()})}",
  ]
  if critics:
    backup = {l: "without" if not a["backup_entropy"] else "with" for l, a in critics.items()}
    parts.append(
        f"critics {_shared({l: a['critic_hidden_sizes'] for l, a in critics.items()})} hidden "
        f"units, critic lr {_shared({l: a['critic_lr'] for l, a in critics.items()})}, "
        f"γ = {_shared({l: a['gamma'] for l, a in critics.items()})}, Polyak rate "
        f"{_shared({l: a['polyak'] for l, a in critics.items()})}, backup "
        f"{_shared(backup)} the entropy term")
  policy = "deterministic (the mode)" if first.get("eval_deterministic", True) else "sampled"
  evaluation = (f"Evaluation: {first['eval_episodes']} episodes per seed, {policy} actions, "
                f"every {_shared({l: r['eval_every'] for l, r in runs.items()})} steps.")
  methods = " ".join(describe_agent(label, agent) for label, agent in agents.items())
  return f"Setup: {'; '.join(parts)}. {evaluation}\nMethods. {methods}"
