# Three commits' `overlooked bench memory`, alternating, 8 rounds, 2026-12-05 11:45-11:49, 2-core AMD EPYC, 2 threads.
# The older commits run from git worktrees: git worktree add /tmp/t_baa baa730f; git worktree add /tmp/t_d79 d79f150.
# One bench folder per run under <commit>/; log.txt has the training stories/s of each, in order.
# The 96d4697 folders record '96d4697-dirty': the uncommitted edits at the time were to docs/memory.md only.
source .venv/bin/activate
export OVERLOOKED_DATA=../shared/data
for i in 1 2 3 4 5 6 7 8; do
  for v in baa730f d79f150 96d4697; do
    case $v in baa730f) P=/tmp/t_baa/src;; d79f150) P=/tmp/t_d79/src;; *) P=./src;; esac
    r=$(PYTHONPATH=$P python -m overlooked bench memory --out runs/ab_series/$v 2>&1 | grep "train:" | awk '{print $7}')
    echo "$i $v $r"
  done
done
