#!/usr/bin/env bash
# Reproduces checkpoints/ablations/*: the three ablations of the default U-Net (presets no-skip, no-time,
# plain-cnn) and its `deep` variant (two residual blocks per level), each trained with the default model's
# budget (3,000 steps x 128 digits, same seed, data and recipe), exported with the default's recommended
# guidance (weight and interval) and evaluated exactly like it (1,000 samples), so the Architecture page
# compares like with like; the default itself (checkpoints/default) is the reference.
# Usage: scripts/train_ablations.sh [NAME ...]   (THREADS=1 to leave a core free; ~50-80 min each on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REC="import json; r = json.load(open('checkpoints/default/config.json'))['recommended']"
GUIDANCE=$($PY -c "$REC; print(r['guidance'])")
INTERVAL=$($PY -c "$REC; print(*r.get('guidance_interval', [0, 1]))")
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(no-skip no-time plain-cnn deep)
for name in "${NAMES[@]}"; do
  run=checkpoints/runs/full-$name
  if ! grep -q '"step": 3000,' "$run/meta.json" 2>/dev/null; then   # not trained to the end yet
    if [ -f "$run/meta.json" ]; then
      $PY -m engine train --out "$run" --resume ${THREADS:+--threads $THREADS}
    else
      $PY -m engine train --preset "$name" --out "$run" --no-snapshots ${THREADS:+--threads $THREADS}
    fi
  fi
  $PY -m engine export --checkpoint "$run" --out "checkpoints/ablations/$name" --force --guidance "$GUIDANCE" \
      --guidance-interval $INTERVAL
  $PY -m engine evaluate --checkpoint "checkpoints/ablations/$name" --per-class 100 --no-cache \
      --out "checkpoints/ablations/$name/report.json" ${THREADS:+--threads $THREADS}
done
