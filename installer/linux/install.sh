#!/bin/sh
# Add Heirloom to your applications menu (for you only, no administrator rights needed), or remove it.
#
#   ./install.sh              menu entry + icon, pointing at this folder (move the folder first if you
#                             want it elsewhere, e.g. ~/.local/opt/Heirloom, then run this again)
#   ./install.sh --uninstall  remove the menu entry and icon; then delete this folder.
#                             Your photos, settings, masks, queue and profiles are not touched.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
APPS="$DATA/applications"
ICONS="$DATA/icons/hicolor"
SIZES="16 24 32 48 64 128 256 512"

refresh() {
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS" 2>/dev/null || true
  # Only refresh an icon cache that exists: a new one would hide icons other programs add later.
  if [ -f "$ICONS/icon-theme.cache" ] && command -v gtk-update-icon-cache >/dev/null 2>&1; then
    gtk-update-icon-cache -q -t "$ICONS" 2>/dev/null || true
  fi
}

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$APPS/heirloom.desktop"
  for s in $SIZES; do rm -f "$ICONS/${s}x${s}/apps/heirloom.png"; done
  refresh
  echo "Heirloom's menu entry is removed. Delete the folder $HERE to remove the program."
  exit 0
fi
if [ $# -gt 0 ]; then
  echo "usage: $0 [--uninstall]" >&2
  exit 2
fi

[ -x "$HERE/Heirloom" ] || { echo "install.sh: $HERE/Heirloom not found; run this script from the Heirloom folder" >&2; exit 1; }
mkdir -p "$APPS"
for s in $SIZES; do
  src="$HERE/_internal/resources/icons/heirloom-$s.png"
  [ -f "$src" ] || continue
  mkdir -p "$ICONS/${s}x${s}/apps"
  cp "$src" "$ICONS/${s}x${s}/apps/heirloom.png"
done
# Desktop-entry quoting of the program path (the folder may have spaces or other odd characters):
# \ becomes \\\\, " ` $ get \\ in front, % is doubled.
exec_path=$(printf '%s' "$HERE/Heirloom" | sed -e 's/\\/\\\\\\\\/g' -e 's/["`$]/\\\\&/g' -e 's/%/%%/g')
while IFS= read -r line; do
  case "$line" in
    Exec=*) printf 'Exec="%s" %%F\n' "$exec_path" ;;
    *) printf '%s\n' "$line" ;;
  esac
done < "$HERE/heirloom.desktop" > "$APPS/heirloom.desktop"
chmod 644 "$APPS/heirloom.desktop"
refresh
echo "Heirloom is in your applications menu (Graphics). It runs from $HERE."
