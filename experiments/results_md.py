"""Replace one "## " section of RESULTS.md, leaving every other section as it is."""
from __future__ import annotations

import os
import pathlib
import tempfile


def write_section(path: str, heading: str, body: str) -> None:
  """Writes `heading` + `body` in place of the section that starts with `heading` (or appends).

  heading: the full line, e.g. "## Table 4: value over/under-estimation (issue 5)". The section
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
