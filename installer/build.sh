#!/usr/bin/env bash
# Build Heirloom's double-click bundle (PyInstaller, one folder) in an isolated build environment.
#
#   installer/build.sh [--torch cpu|cuda] [--require-weights] [--fresh-venv] [--venv-only] [--no-archive]
#
#   --torch cpu          (default) PyTorch's CPU-only wheel, torch==2.13.0+cpu: a much smaller bundle
#   --torch cuda         the project's default PyTorch (2.14.1 with the NVIDIA CUDA libraries)
#   --require-weights    fail unless Heirloom's default weights are in resources/weights/heirloom-lite-v1
#   --fresh-venv         rebuild the build environment from scratch
#   --venv-only          only create / update the build environment
#   --no-archive         skip the tarball (Linux) / disk image (macOS) / zip (Windows)
#
# The build environment lives in build/installer-<variant>/venv (gitignored) and is reused while
# pyproject.toml and the pinned requirements below are unchanged (--fresh-venv forces a rebuild).
# It holds the chosen torch, the runtime dependencies from pyproject.toml except torchvision
# (nothing in Heirloom imports it), Heirloom itself, facenet-pytorch (for its MTCNN weight files
# only) and PyInstaller. The spec then keeps only what the modules Heirloom imports need.
#
# Output: dist/Heirloom/ (macOS: dist/Heirloom.app) and, unless --no-archive,
#   Linux    dist/Heirloom-<version>-linux-<arch>-<variant>.tar.gz   (with heirloom.desktop, icon, install.sh)
#   macOS    dist/Heirloom-<version>-macos-<arch>.dmg                (hdiutil)
#   Windows  dist/Heirloom-<version>-windows-<arch>-<variant>.zip    (run from Git Bash)
# Environment: PYTHON (interpreter for the build venv, default python3; must be 3.11+),
#   HEIRLOOM_TORCH_CPU / HEIRLOOM_TORCH_CUDA (pip requirement for torch), PIP_ARGS (extra pip options,
#   e.g. --index-url for PyTorch's own wheel index on Windows).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VARIANT=cpu REQUIRE_WEIGHTS=0 FRESH=0 VENV_ONLY=0 ARCHIVE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) VARIANT=${2:-}; shift 2 ;;
    --torch=*) VARIANT=${1#--torch=}; shift ;;
    --require-weights) REQUIRE_WEIGHTS=1; shift ;;
    --fresh-venv) FRESH=1; shift ;;
    --venv-only) VENV_ONLY=1; shift ;;
    --no-archive) ARCHIVE=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

PYINSTALLER_REQ="pyinstaller==6.22.3"
FACENET_REQ="facenet-pytorch==2.6.0"
case "$(uname -s)" in
  Linux) OS=linux ;;
  Darwin) OS=macos ;;
  MINGW*|MSYS*|CYGWIN*) OS=windows ;;
  *) echo "build.sh: unsupported system $(uname -s)" >&2; exit 2 ;;
esac
# Linux: PyPI's torch is the CUDA build, the CPU-only build is 2.13.0+cpu (on this project's build
# machines it lies in the local wheel store; elsewhere add PyTorch's index, see installer/README.md).
# macOS and Windows: PyPI's torch has no CUDA (macOS: CPU + Apple MPS), so "cpu" is plain 2.13.0.
case "$VARIANT:$OS" in
  cpu:linux) TORCH_REQ=${HEIRLOOM_TORCH_CPU:-torch==2.13.0+cpu} ;;
  cpu:*) TORCH_REQ=${HEIRLOOM_TORCH_CPU:-torch==2.13.0} ;;
  cuda:*) TORCH_REQ=${HEIRLOOM_TORCH_CUDA:-torch==2.14.1} ;;
  *) echo "build.sh: --torch takes cpu or cuda, not '$VARIANT'" >&2; exit 2 ;;
esac
ARCH=$(uname -m)
[ "$OS" = macos ] && [ "$VARIANT" = cuda ] && { echo "build.sh: there is no CUDA PyTorch for macOS; use --torch cpu (it includes Apple's MPS)" >&2; exit 2; }

BUILD="build/installer-$VARIANT"
VENV="$BUILD/venv"
if [ "$OS" = windows ]; then VPY="$VENV/Scripts/python.exe"; else VPY="$VENV/bin/python"; fi
PYTHON=${PYTHON:-$(command -v python3 >/dev/null 2>&1 && echo python3 || echo python)}
PIP_ARGS=${PIP_ARGS:-}
log() { printf '\n== %s\n' "$*"; }

# ------------------------------------------------------------------------------ build environment
stamp_text() {
  printf '%s\n' "$TORCH_REQ" "$PYINSTALLER_REQ" "$FACENET_REQ" "$PIP_ARGS"
  cat pyproject.toml
}
STAMP="$VENV/.heirloom-build-stamp"
if [ "$FRESH" = 1 ] || [ ! -x "$VPY" ] || ! stamp_text | cmp -s - "$STAMP"; then
  log "build environment $VENV ($TORCH_REQ)"
  rm -rf "$VENV"
  mkdir -p "$BUILD"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "build.sh: $PYTHON is older than Python 3.11" >&2; exit 2; }
  "$PYTHON" -m venv "$VENV"
  pip() { "$VPY" -m pip --disable-pip-version-check -q "$@"; }
  pip install --upgrade pip
  # shellcheck disable=SC2086
  pip install $PIP_ARGS "$TORCH_REQ"
  # The runtime requirements of pyproject.toml, minus torch (installed above) and torchvision.
  "$VPY" - > "$BUILD/requirements.txt" <<'EOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for dep in deps:
    name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0).lower()
    if name in ("torch", "torchvision"):
        continue
    print(dep)
EOF
  echo "runtime requirements: $(tr '\n' ' ' < "$BUILD/requirements.txt")"
  # The constraint keeps pip from replacing the chosen torch while it resolves the rest.
  "$VPY" -c 'import torch; print(f"torch=={torch.__version__}")' > "$BUILD/torch-constraint.txt"
  # shellcheck disable=SC2086
  pip install $PIP_ARGS -r "$BUILD/requirements.txt" -c "$BUILD/torch-constraint.txt"
  pip install --no-deps .                      # Heirloom itself (engine, gui, manifests)
  pip install --no-deps "$FACENET_REQ"         # only its data/{p,r,o}net.pt are bundled, never its code
  pip install "$PYINSTALLER_REQ" -c "$BUILD/torch-constraint.txt"
  "$VPY" - "$VARIANT" <<'EOF'
import importlib.util, sys
import torch
variant = sys.argv[1]
cuda = torch.version.cuda
if (variant == "cpu") != (cuda is None):
    sys.exit(f"build.sh: wanted the {variant} build of PyTorch, got torch {torch.__version__} (CUDA {cuda})")
if importlib.util.find_spec("torchvision") is not None:
    sys.exit("build.sh: torchvision is installed in the build environment; Heirloom does not use it")
print(f"torch {torch.__version__} (CUDA {cuda or 'none'}) ready")
EOF
  stamp_text > "$STAMP"
else
  log "reusing build environment $VENV"
fi
[ "$VENV_ONLY" = 1 ] && exit 0

# ------------------------------------------------------------------------------ bundle
VERSION=$("$VPY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
log "PyInstaller: Heirloom $VERSION, $VARIANT variant"
start=$(date +%s)
# What is built, for support questions ("which bundle do you have?"): bundled by the spec, so the
# macOS .app is not modified after PyInstaller has signed it.
"$VPY" - "$VERSION" "$VARIANT" > "$BUILD/BUILD-INFO.txt" <<'EOF'
import platform, sys, datetime
import torch, PySide6
version, variant = sys.argv[1:]
print(f"Heirloom {version}\nvariant: {variant}\ntorch: {torch.__version__} (CUDA {torch.version.cuda or 'none'})")
print(f"PySide6: {PySide6.__version__}\nPython: {platform.python_version()}\nplatform: {platform.platform()}")
print(f"built: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
EOF
HEIRLOOM_TORCH_VARIANT=$VARIANT HEIRLOOM_REQUIRE_WEIGHTS=$REQUIRE_WEIGHTS HEIRLOOM_BUILD_INFO="$ROOT/$BUILD/BUILD-INFO.txt" \
  "$VPY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath "$BUILD/work" installer/heirloom.spec
if [ "$OS" = macos ]; then APP=dist/Heirloom.app; else APP=dist/Heirloom; fi

if [ "$OS" = linux ]; then
  cp resources/icons/heirloom.png "$APP/heirloom.png"
  cp installer/linux/heirloom.desktop installer/linux/install.sh "$APP/"
  chmod +x "$APP/install.sh"
fi
built=$(date +%s)
echo "bundle: $APP  $(du -sh "$APP" | cut -f1)  (PyInstaller $((built - start)) s)"

if [ "$ARCHIVE" = 1 ]; then
  case "$OS" in
    linux)
      ARCHIVE_PATH="dist/Heirloom-$VERSION-linux-$ARCH-$VARIANT.tar.gz"
      tar -C dist -czf "$ARCHIVE_PATH" Heirloom ;;
    macos)
      ARCHIVE_PATH="dist/Heirloom-$VERSION-macos-$ARCH.dmg"
      rm -f "$ARCHIVE_PATH"
      hdiutil create -volname Heirloom -srcfolder "$APP" -ov -format UDZO "$ARCHIVE_PATH" >/dev/null ;;
    windows)
      ARCHIVE_PATH="dist/Heirloom-$VERSION-windows-$ARCH-$VARIANT.zip"
      "$VPY" -c 'import shutil, sys; shutil.make_archive(sys.argv[1][:-4], "zip", "dist", "Heirloom")' "$ARCHIVE_PATH" ;;
  esac
  echo "archive: $ARCHIVE_PATH  $(du -sh "$ARCHIVE_PATH" | cut -f1)  ($(($(date +%s) - built)) s)"
fi
echo "build time: $(($(date +%s) - start)) s"
