#!/usr/bin/env bash
# Reproduces checkpoints/ablations/*: the tiny U-Net and three ablations of it, each trained with the same
# budget (steps, batch, seed, data), then exported slim and evaluated. Usage: scripts/train_ablations.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-1000}
PY=${PY:-.venv/bin/python}
declare -A SETS=(
  [unet]=""
  [no-skip]="--model-set skip_connections=false"
  [no-time]="--model-set time_embedding=false"
  [plain-cnn]="--model-set arch=cnn"
)
for name in unet no-skip no-time plain-cnn; do
  run=checkpoints/runs/ablation-$name
  if ! grep -q "\"step\": $STEPS," "$run/meta.json" 2>/dev/null; then   # not trained to STEPS yet
    # shellcheck disable=SC2086
    $PY -m engine train --preset tiny --steps "$STEPS" --out "$run" --force --no-snapshots ${SETS[$name]} ${THREADS:+--threads $THREADS}
  fi
  $PY -m engine export --checkpoint "$run" --out "checkpoints/ablations/$name" --force
  $PY -m engine evaluate --checkpoint "checkpoints/ablations/$name" --per-class 20 --no-cache \
      --out "checkpoints/ablations/$name/report.json" ${THREADS:+--threads $THREADS}
done
