#!/usr/bin/env bash
# Train (or continue training) every stage of the lite configuration, one after the other, in the
# background-friendly way: each stage resumes from its checkpoint if there is one, and logs to
# runs/lite/<stage>.log. Then export the weights the app ships.
#   scripts/train_lite.sh [STAGE...]     (default: vae-b vae-a mapping detector)
#   CONFIG=lite-d8 CORES=1 STEPS=40000 scripts/train_lite.sh detector   (the 8-channel detector)
#   CONFIG=lite-real CORES=1 scripts/train_lite.sh detector   (the 16-channel detector continued with
#       real damaged photos: bench/real_masks' calib split; starts from training-runs/lite/detector;
#       CONFIG=lite-d8-real: the same for the 8-channel detector, from training-runs/lite-d8/detector)
#   CORES=1 scripts/train_lite.sh refine   (the full-resolution refinement behind the shipped weights'
#       chain, WEIGHTS=resources/weights/heirloom-lite-v1 by default; ship it with train export-refine)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# CORES=0 pins the run to one core (two stages can then train side by side without thrashing)
PIN=()
[ -n "${CORES:-}" ] && PIN=(taskset -c "$CORES")
CONFIG=${CONFIG:-lite}  # lite-d8: the same with the 8-channel detector
RUNS=${RUNS:-training-runs/$CONFIG}  # committed, so a later session resumes
mkdir -p "$RUNS"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(vae-b vae-a mapping detector)
for stage in "${stages[@]}"; do
  resume=()
  [ -f "$RUNS/$stage/checkpoint.pt" ] && resume=(--resume)
  echo "== $(date -Is) $stage ${resume[*]}" >> "$RUNS/$stage.log"
  steps=()
  [ -n "${STEPS:-}" ] && steps=(--steps "$STEPS")  # STEPS=6000: train past the configuration's count
  extra=()
  [[ "$CONFIG" == *-real ]] && [ "$stage" = detector ] && \
    extra=(--real-masks bench/real_masks --init-from "${INIT_FROM:-training-runs/${CONFIG%-real}/detector}")
  [ "$stage" = refine ] && extra=(--weights "${WEIGHTS:-resources/weights/heirloom-lite-v1}")
  "${PIN[@]}" $PY -m engine.cli.train train "$stage" --config "$CONFIG" --out "$RUNS/$stage" --device cpu "${resume[@]}" "${steps[@]}" "${extra[@]}" \
      >> "$RUNS/$stage.log" 2>&1 || { echo "stage $stage failed, see $RUNS/$stage.log"; exit 1; }
done
