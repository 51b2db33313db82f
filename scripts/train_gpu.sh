#!/usr/bin/env bash
# Train every stage on one CUDA device within a time budget, then export the weights, all in one folder:
#   $OUT/runs/<stage>/   checkpoint.pt, metrics.jsonl, samples/   (vae-b, vae-a, mapping, detector[, joint, face])
#   $OUT/weights/        the exported weights (open them with --weights $OUT/weights)
#   $OUT/recipe.json     steps, seconds and steps per second of each stage; $OUT/train.log the run's output
#
#   scripts/train_gpu.sh                                   (config gpu, 10 minutes, cuda, bf16)
#   MINUTES=30 OUT=training-runs/gpu-long scripts/train_gpu.sh
#   EXTRA="joint face" AMP=fp16 CONFIG=full scripts/train_gpu.sh   (optional stages; fp16 before Ampere)
#   CONFIG=tiny DEVICE=cpu MINUTES=1 scripts/train_gpu.sh          (the CPU check the tests run)
# MINUTES is shared by the stages (each gets the time left over the stages left); the export after
# them (detector calibration, tone and strength fits, on the CPU) is not counted. Running the script
# again on the same OUT continues every stage from its checkpoint for another budget and exports again.
# CLEAN / OLD: photo folders (default: the CLI's ../shared/data/clean_train and real_old); REAL_MASKS:
# the labelled real damage the detector also trains on (default bench/real_masks, its calib split).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CONFIG=${CONFIG:-gpu}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-10}
OUT=${OUT:-training-runs/$CONFIG-$(date +%Y%m%d-%H%M%S)}
if [[ $DEVICE == cuda* ]]; then
  AMP=${AMP:-bf16}
  # the degradation runs in worker processes: all cores but one, which feeds the GPU
  WORKERS=${WORKERS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 0 ))}
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "no usable CUDA device; for a CPU run say DEVICE=cpu (and a small CONFIG)" >&2; exit 2; }
else
  AMP=${AMP:-off}  # autocast is for CUDA; the CLI refuses it elsewhere
  WORKERS=${WORKERS:-0}
fi
data=()
[ -n "${CLEAN:-}" ] && data+=(--clean $CLEAN)
[ -n "${OLD:-}" ] && data+=(--old $OLD)
# real damaged photos with reference masks for the detector (configs whose detector takes real crops)
REAL_MASKS=${REAL_MASKS:-bench/real_masks}
[ -d "$REAL_MASKS" ] && data+=(--real-masks "$REAL_MASKS")
extra=()
[ -n "${EXTRA:-}" ] && extra=(--with $EXTRA)
mkdir -p "$OUT"
echo "== $(date -Is) config $CONFIG on $DEVICE, $MINUTES min, amp $AMP, $WORKERS workers -> $OUT" | tee -a "$OUT/train.log"
"$PY" -m engine.cli.train train recipe --config "$CONFIG" --out "$OUT" --device "$DEVICE" --minutes "$MINUTES" \
    --amp "$AMP" --workers "$WORKERS" "${extra[@]}" "${data[@]}" 2>&1 | tee -a "$OUT/train.log"
echo "weights: $OUT/weights (restore with: python main.py restore PHOTO --weights $OUT/weights)"
