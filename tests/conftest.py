"""Test-wide JAX settings: CPU, a persistent compilation cache, and key-reuse checking."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Tests make their datasets under the repo's ignored data dir unless the user points elsewhere.
os.environ.setdefault("MINARI_DATASETS_PATH", str(_ROOT / "data" / "minari"))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(_ROOT / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_debug_key_reuse", True)


@pytest.fixture(scope="module")
def pendulum_minari_root(tmp_path_factory):
  """A module's own MINARI_DATASETS_PATH holding a 4-episode Pendulum medium dataset."""
  from cql_jax.makers import pendulum
  root = tmp_path_factory.mktemp("minari")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    pendulum.ensure_pendulum_datasets(kinds=("medium",), num_episodes=4, ref_episodes=4)
    yield root
