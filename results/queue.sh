#!/bin/bash
# The diagnosis runs of RESULTS.md, in the order they ran (one job at a time, pinned to core 1).
cd /work/wt-results
export MINARI_DATASETS_PATH=$PWD/data/minari JAX_COMPILATION_CACHE_DIR=/work/.jax_cache_shared PYTHONPATH=.
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
PY="taskset -c 1 /work/main/.venv/bin/python -m experiments.diagnose"
CP="--num_steps=30000 --eval_every=5000 --num_seeds=3 --out=results/diagnose-cartpole.jsonl"
P6="--num_steps=6000 --eval_every=2000 --num_seeds=2 --out=results/diagnose-pendulum-6k.jsonl"
if [ "$1" != "--after-pendulum-12k" ]; then
$PY --runs=cp-me/dcql,cp-me/dqn,cp-me/dcql-d3rlpy,cp-me/dcql-lr,cp-me/dcql-tgt8000,cp-me/dcql-tgt2000,cp-me/dcql-double $CP
$PY --runs=cp-me-small/dcql,cp-me-small/dqn,cp-me-small/dcql-tgt8000,cp-me-small/dcql-lr,cp-me-small/dcql-tgt2000,cp-me-small/dcql-double $CP
$PY --runs=pend-expert/cql,pend-expert/bc --num_steps=12000 --eval_every=2000 --num_seeds=2 --out=results/diagnose-pendulum-12k.jsonl
else
  while kill -0 26344 2>/dev/null; do sleep 10; done
fi
$PY --runs=cp-mr/dcql,cp-mr/dcql-tgt2000 $CP
$PY --runs=pend-expert/cql-bc2k,pend-expert/cql-fixtemp0,pend-expert/sac,pend-expert/cql-alr1e-4,pend-expert/cql-lag5 $P6
echo QUEUE DONE
