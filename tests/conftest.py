"""Test-wide JAX settings: CPU, a persistent compilation cache, and key-reuse checking."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Tests make their datasets under the repo's ignored data dir unless the user points elsewhere.
os.environ.setdefault("MINARI_DATASETS_PATH", str(_ROOT / "data" / "minari"))

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", str(_ROOT / ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_debug_key_reuse", True)
