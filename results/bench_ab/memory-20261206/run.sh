# Two commits' `overlooked bench memory`, alternating, 8 rounds, 2026-12-06 09:11-09:15, 2-core Intel Xeon @ 2.80 GHz VM, 2 threads.
# 68c9dc1: before the fused MemN2N (autograd through the functional pieces); 1e39480: the C++ MemN2N kernel (c1fb6e7, 023d816).
# The older commit runs from a git worktree: git worktree add /tmp/old68 68c9dc1 (its folders record git 68c9dc1).
# One bench folder per run under <commit>/; log.txt has each run's training and inference stories/s, in order.
source .venv/bin/activate
N=8; OUT=runs/bench_ab_intel
for i in $(seq 1 $N); do
  for which in old new; do
    if [ $which = old ]; then SRC=/tmp/old68/src; else SRC=$PWD/src; fi
    echo "round $i $which $(date +%T)"
    OVERLOOKED_DATA=../shared/data PYTHONPATH=$SRC python -m overlooked bench memory --out $OUT/$which 2>&1 | grep "stories/s"
  done
done
