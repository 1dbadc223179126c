#!/usr/bin/env bash
# After the comparison has finished (pretrained30/results.json written by main's code): publish and render.
set -euo pipefail
test -f /work/runs/pretrained30/results.json
cd /work/main
. .venv/bin/activate
python scripts/publish_run.py /work/runs/pretrained30 docs/pretrained
python /work/runs/readme_edit.py
python scripts/render_tables.py
python scripts/render_tables.py --check
