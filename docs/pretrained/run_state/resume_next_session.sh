#!/usr/bin/env bash
# Next session, first thing (the comparison was killed at session 9's end): put back the wall time the killed
# invocations lost, pin the run to main's HEAD (heartbeat wall clock), drop half-trained cells, continue in the
# background. Then, when pretrained30/results.json is newer than this start: ./publish.sh
set -euo pipefail
cd /work/runs
if pgrep -f "insightface_lr.cli demo --out /work/runs/pretrained30" >/dev/null; then echo "still running"; exit 1; fi
python3 fix_wall.py pretrained30/wall.json pretrained30.log
git -C /work/run_code checkout -q --detach "$(git -C /work/main rev-parse HEAD)"
for d in pretrained30/tune/* pretrained30/students/*; do [ -f "$d/student.pt" ] || { echo "partial: $d"; rm -rf "$d"; }; done
for d in pretrained30/cache/*; do [ -n "$(ls -A "$d")" ] || rm -rf "$d"; done
rm -f pretrained30/results.json
nohup ./run_comparison.sh >> pretrained30.log 2>&1 &
echo "resumed"
