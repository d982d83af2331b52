"""Where Minari datasets live on disk.

Minari resolves every dataset id against the environment variable
``MINARI_DATASETS_PATH`` (falling back to ``~/.minari/datasets``) each time it is
called. This project keeps its datasets inside the repository's git-ignored
``data/`` directory instead, so that generated datasets travel with the checkout
and never mix with a user's global Minari cache.
"""
from __future__ import annotations

import os
import pathlib

ENV_VAR = "MINARI_DATASETS_PATH"

# cql_jax/data/paths.py -> repository root is three levels up.
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def default_datasets_root() -> pathlib.Path:
  """The repository-local dataset directory, ``<repo>/data/minari``."""
  return _REPO_ROOT / "data" / "minari"


def datasets_root() -> pathlib.Path:
  """Returns the Minari dataset root and makes sure Minari uses the same one.

  If ``MINARI_DATASETS_PATH`` is set it wins (users may share one cache across
  projects). Otherwise the variable is set to ``<repo>/data/minari`` for this
  process, because Minari reads the variable rather than taking a path argument;
  without that, ``minari.load_dataset`` and ``create_dataset_from_buffers``
  would look in ``~/.minari/datasets``.

  Returns:
    Absolute path of the directory (created if missing).
  """
  value = os.environ.get(ENV_VAR)
  if value:
    root = pathlib.Path(value).expanduser().resolve()
  else:
    root = default_datasets_root()
    os.environ[ENV_VAR] = str(root)
  root.mkdir(parents=True, exist_ok=True)
  return root


def dataset_dir(dataset_id: str) -> pathlib.Path:
  """Directory that holds ``dataset_id`` (it may not exist yet)."""
  return datasets_root() / dataset_id


def dataset_exists(dataset_id: str) -> bool:
  """True when ``dataset_id`` is stored locally (Minari's own test: a ``data/`` subdir)."""
  return (dataset_dir(dataset_id) / "data").is_dir()
