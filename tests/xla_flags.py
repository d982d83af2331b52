"""The XLA flags of the suite's processes, and of the few runs that need XLA's usual ones.

Nearly every test compiles a tiny program and runs it for a few steps, so compiling is most of
its time, and LLVM's optimisation most of compiling: the tiny CQL agent's init compiles in 9.4 s
at XLA's default backend optimisation level (2), 1.9 s at level 1 and 1.6 s at level 0. Level 0
makes convolutions several times slower to run (the Atari end-to-end test: 21 s at the default,
112 s at 0, 17 s at 1), so the suite compiles at level 1. The programs compute the same
functions; their floating-point rounding may differ, so a test that asserts a learning score
runs its training in a process with `optimised()` flags, as a user's run would.
"""
import os

FAST_COMPILE = "--xla_backend_optimization_level=1"
# The suite runs one pytest worker per core, so a process that also spreads its matrix products
# over an Eigen thread pool sized to every core only oversubscribes them: on the 2-core CI
# machine the whole suite took 557 s with one Eigen thread per process against 610 s without.
SINGLE_THREAD_EIGEN = "--xla_cpu_multi_thread_eigen=false"


def optimised() -> str:
  """This process's XLA_FLAGS without FAST_COMPILE (what the user's own shell had)."""
  return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if f != FAST_COMPILE)


def fast_compile(flags: str = "") -> str:
  """`flags` with FAST_COMPILE added (once)."""
  parts = flags.split()
  return " ".join(parts + ([] if FAST_COMPILE in parts else [FAST_COMPILE]))


def single_thread_eigen(flags: str = "") -> str:
  """`flags` with SINGLE_THREAD_EIGEN first, unless the user's flags set Eigen threading."""
  parts = flags.split()
  if any(p.startswith("--xla_cpu_multi_thread_eigen") for p in parts):
    return flags
  return " ".join([SINGLE_THREAD_EIGEN] + parts)
