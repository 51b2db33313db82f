#!/usr/bin/env bash
# Smoke test of the desktop bundle (slow: not part of CI). Builds it (or takes dist/ as it is) and checks
# that the program starts, prints its version, makes and restores a sample photo from the command
# line, and renders an offscreen screenshot; prints build time, bundle size and start-up times.
#
#   installer/smoke_test.sh [--skip-build] [--torch cpu|cuda] [--keep]
#
#   --skip-build   test the existing dist/Heirloom instead of building it
#   --torch        variant to build (default cpu; ignored with --skip-build)
#   --keep         keep the scratch folder (sample, restored photo, screenshot) and print where it is
#
# Weights: with Heirloom's default weights in the bundle (resources/weights/heirloom-lite-v1) the
# restore uses them, as a user's first restore would. Without them it says so and restores with tiny
# random weights generated into the scratch folder (this checks the wiring, not the quality).
# The user's own settings and data are never touched: everything goes to a scratch folder.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VARIANT=cpu BUILD=1 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-build) BUILD=0; shift ;;
    --torch) VARIANT=${2:-}; shift 2 ;;
    --torch=*) VARIANT=${1#--torch=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "smoke_test.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

APP=dist/Heirloom
BIN=$APP/Heirloom
FAILURES=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; FAILURES=$((FAILURES + 1)); }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

BUILD_TIME="(not built: --skip-build)"
if [ "$BUILD" = 1 ]; then
  echo "== building the $VARIANT bundle (installer/build.sh --torch $VARIANT)"
  t0=$(now)
  if ! installer/build.sh --torch "$VARIANT"; then
    echo "FAIL  build"; exit 1
  fi
  BUILD_TIME="$(elapsed "$t0" "$(now)") s"
fi
[ -x "$BIN" ] || { echo "FAIL  $BIN not found (build first, or drop --skip-build)"; exit 1; }
VARIANT_BUILT=$(sed -n 's/^variant: //p' "$APP/_internal/BUILD-INFO.txt" 2>/dev/null)
echo "== testing $APP (${VARIANT_BUILT:-unknown} variant)"

# A Python with torch, numpy and Pillow, outside the bundle, for the tiny weights and the pixel checks.
HELPER=""
for py in "build/installer-${VARIANT_BUILT:-$VARIANT}/venv/bin/python" build/installer-cpu/venv/bin/python \
          build/installer-cuda/venv/bin/python .venv/bin/python; do
  if [ -x "$py" ] && "$py" -c 'import torch, numpy, PIL' 2>/dev/null; then HELPER=$py; break; fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/heirloom-smoke.XXXXXX")
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
export HEIRLOOM_DATA_DIR="$WORK/data" HEIRLOOM_SETTINGS_FILE="$WORK/settings.ini"

# ------------------------------------------------------------------ what is (not) in the bundle
INTERNAL=$APP/_internal
for f in pnet rnet onet; do [ -f "$INTERNAL/facenet_pytorch/data/$f.pt" ] || fail "MTCNN weights $f.pt missing"; done
if [ -n "$(find "$INTERNAL/facenet_pytorch" -name '*.py*' 2>/dev/null)" ]; then fail "facenet_pytorch code was bundled"
else pass "MTCNN weight files bundled (no facenet_pytorch code)"; fi
[ -f "$INTERNAL/skimage/data/astronaut.png" ] && pass "scikit-image sample photos bundled" || fail "skimage/data missing"
[ -f "$INTERNAL/engine/models/manifests/official.json" ] && pass "weight manifests bundled" || fail "manifests missing"
[ -f "$INTERNAL/resources/icons/heirloom.png" ] && pass "icons bundled" || fail "resources/icons missing"
ls "$INTERNAL"/PySide6/Qt/plugins/platforms/libqoffscreen.* >/dev/null 2>&1 && pass "Qt offscreen platform plugin bundled" \
  || fail "Qt offscreen plugin missing"
if [ -e "$INTERNAL/tests" ] || [ -e "$INTERNAL/torchvision" ]; then fail "tests/ or torchvision in the bundle"
else pass "no tests/ and no torchvision in the bundle"; fi
if ls "$APP"/_internal/resources/weights/heirloom-lite-v1/*.safetensors >/dev/null 2>&1; then
  WEIGHTS=default
  pass "default weights bundled ($(du -sh "$INTERNAL/resources/weights/heirloom-lite-v1" | cut -f1))"
else
  WEIGHTS=""
  echo "NOTE  the default weights are NOT in this bundle (resources/weights/heirloom-lite-v1 was empty at build time):"
  echo "      a user would see 'weights missing'. The restore below uses tiny random weights instead."
fi

# ------------------------------------------------------------------ version
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
t0=$(now)
OUT=$("$BIN" --version 2>&1)
VERSION_TIME=$(elapsed "$t0" "$(now)")
if [ "$OUT" = "Heirloom $VERSION" ]; then pass "--version prints '$OUT' (${VERSION_TIME} s)"
else fail "--version printed '$OUT', expected 'Heirloom $VERSION'"; fi

# ------------------------------------------------------------------ sample photo + restore (command line)
SAMPLE=$("$BIN" sample -o "$WORK/in" 2>"$WORK/sample.err")
if [ -f "$SAMPLE" ]; then pass "sample photo made by the bundle: $(basename "$SAMPLE")"
else fail "sample photo: $(cat "$WORK/sample.err")"; SAMPLE=""; fi

RESTORE_TIME="n/a"
if [ -n "$SAMPLE" ]; then
  if [ -z "$WEIGHTS" ]; then
    if [ -n "$HELPER" ]; then
      PYTHONPATH="$ROOT/tests:$ROOT" "$HELPER" -c \
        'import sys; from tiny_weights import make_tiny_weights; make_tiny_weights(__import__("pathlib").Path(sys.argv[1]))' \
        "$WORK/tiny-weights" && WEIGHTS="$WORK/tiny-weights"
    fi
    [ -n "$WEIGHTS" ] || fail "no default weights in the bundle and no Python with torch to make tiny ones"
  fi
  if [ -n "$WEIGHTS" ]; then
    "$BIN" models > "$WORK/models.txt" 2>&1; sed 's/^/      /' "$WORK/models.txt"
    t0=$(now)
    "$BIN" restore "$SAMPLE" -o "$WORK/out" --scratch --weights "$WEIGHTS" --device cpu > "$WORK/restore.log" 2>&1
    rc=$?
    RESTORE_TIME=$(elapsed "$t0" "$(now)")
    RESTORED="$WORK/out/$(basename "$SAMPLE")"
    if [ $rc -ne 0 ] || [ ! -s "$RESTORED" ]; then
      fail "restore exited $rc without $RESTORED:"; tail -5 "$WORK/restore.log"
    elif cmp -s "$SAMPLE" "$RESTORED"; then
      fail "restored photo is identical to the input"
    elif [ -n "$HELPER" ]; then
      if DIFF=$("$HELPER" -c 'import sys
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(p).convert("RGB"), np.float32) for p in sys.argv[1:3])
if a.shape != b.shape:
    sys.exit(f"size changed: {a.shape} -> {b.shape}")
diff = float(np.abs(a - b).mean())
print(f"{a.shape[1]}x{a.shape[0]}, mean |restored - input| = {diff:.1f}/255")
sys.exit(1 if diff == 0 else 0)' "$SAMPLE" "$RESTORED" 2>&1); then
        pass "restore (--scratch, weights: $( [ "$WEIGHTS" = default ] && echo default || echo tiny random)) in ${RESTORE_TIME} s: $DIFF"
      else
        fail "restored photo: ${DIFF:-same pixels as the input}"
      fi
    else
      pass "restore in ${RESTORE_TIME} s: output differs from the input"
    fi
  fi
fi

# ------------------------------------------------------------------ offscreen screenshot (first-run window)
t0=$(now)
QT_QPA_PLATFORM=offscreen "$BIN" --screenshot "$WORK/first-run.png" > "$WORK/shot.log" 2>&1
rc=$?
SHOT_TIME=$(elapsed "$t0" "$(now)")
if [ $rc -eq 0 ] && [ -s "$WORK/first-run.png" ] && [ "$(head -c 8 "$WORK/first-run.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
  pass "offscreen screenshot: PNG, $(wc -c < "$WORK/first-run.png") bytes (${SHOT_TIME} s)"
else
  fail "screenshot (exit $rc):"; tail -5 "$WORK/shot.log"
fi

# ------------------------------------------------------------------ figures
echo
echo "== figures (${VARIANT_BUILT:-?} variant)"
echo "build time:            $BUILD_TIME"
echo "bundle size:           $(du -sh "$APP" | cut -f1)  ($APP)"
for t in dist/Heirloom-*-"${VARIANT_BUILT:-none}".tar.gz; do [ -f "$t" ] && echo "tarball:               $(du -sh "$t" | cut -f1)  ($t)"; done
echo "start-up, --version:   ${VERSION_TIME} s"
echo "start-up, screenshot:  ${SHOT_TIME} s  (window built, rendered offscreen, written, exited)"
echo "restore 512x512 (CPU): ${RESTORE_TIME} s"
[ "$KEEP" = 1 ] && echo "scratch folder:        $WORK"
if [ "$FAILURES" -eq 0 ]; then echo "SMOKE TEST PASSED"; else echo "SMOKE TEST FAILED ($FAILURES)"; exit 1; fi
