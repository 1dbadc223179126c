#!/usr/bin/env bash
# Session end: the finished cells of the running comparison into docs/pretrained/run_state (with the lost wall time
# put back in the copy), so a later session can finish the run if /work/runs is gone.
set -euo pipefail
dest=/work/main/docs/pretrained/run_state
rm -rf "$dest/eval"; mkdir -p "$dest/eval"
cp /work/runs/pretrained30/eval/*.json "$dest/eval/"
cp /work/runs/pretrained30/timings.json "$dest/timings.json"
cp /work/runs/pretrained30/wall.json "$dest/wall.json"
python3 /work/runs/fix_wall.py "$dest/wall.json" /work/runs/pretrained30.log
cd /work/main && . .venv/bin/activate && python - <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, 'scripts')
from publish_run import scrub_paths
for path in Path("docs/pretrained/run_state").rglob("*.json"):
    path.write_text(scrub_paths(path.read_text()))
PY
ls "$dest/eval" | wc -l
