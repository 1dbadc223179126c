#!/usr/bin/env bash
# The issue-30 comparison, resumable: runs the CLI from a pinned copy of the code (/work/run_code, a detached
# worktree of main) so that edits in /work/main never reach its workers mid-run. Re-run this script to continue.
# The folder was started without bridge2: --extend adds it (its tuning first), every finished cell is kept.
cd /work/runs
export PYTHONPATH=/work/run_code
exec /work/main/.venv/bin/python -m insightface_lr.cli demo --out /work/runs/pretrained30 --jobs 2 --threads 1 \
  --no-progress --extend --methods none,kd,feat,rkd,aird,ccface,bridge2 "$@"
