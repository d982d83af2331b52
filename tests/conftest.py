"""Test-wide JAX settings: CPU, a persistent compilation cache, and key-reuse checking."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Tests make their datasets under the repo's ignored data dir unless the user points elsewhere.
os.environ.setdefault("MINARI_DATASETS_PATH", str(_ROOT / "data" / "minari"))

# One persistent compilation cache for this process and every subprocess a test starts (the
# entry point, simulated-device runs): a program any of them compiled loads instead of compiling.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_ROOT / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# Compiling, not running, is most of a tiny test's time (tests/xla_flags.py); every subprocess a
# test starts inherits this unless it sets XLA_FLAGS itself.
from tests import xla_flags  # noqa: E402
os.environ["XLA_FLAGS"] = xla_flags.fast_compile(xla_flags.single_thread_eigen(
    os.environ.get("XLA_FLAGS", "")))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_debug_key_reuse", True)

# The modules that take longest (a cold run on 2 cores, longest first). They are collected
# first, so pytest-xdist's --dist loadfile hands them out first and no long module starts last
# while the other worker idles; the rest keep their order, and so does every module's tests.
HEAVY_FIRST = ("test_sweep_runner", "test_learning", "test_cql_agent", "test_domains_e2e",
               "test_selection", "test_runner", "test_parallel", "test_cli", "test_compare",
               "test_online", "test_finetune", "test_selection_estimators", "test_table4",
               "test_runner_discrete", "test_variants", "test_ogbench")


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable


@pytest.fixture(scope="module")
def pendulum_minari_root(tmp_path_factory):
  """A module's own MINARI_DATASETS_PATH holding a 4-episode Pendulum medium dataset."""
  from cql_jax.makers import pendulum
  root = tmp_path_factory.mktemp("minari")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    pendulum.ensure_pendulum_datasets(kinds=("medium",), num_episodes=4, ref_episodes=4)
    yield root
