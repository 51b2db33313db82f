"""Build the compact checkpoint manifests that ship with the engine.

Reads the reference manifests (``../shared/reference/manifests``) and keeps what validation needs:
each tensor's key, shape, dtype and whether it may be absent. Run by hand when the reference
changes; ``tests/test_manifests.py`` checks the shipped file still agrees with the reference.

    python scripts/build_manifests.py [REFERENCE_MANIFEST_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "engine" / "models" / "manifests" / "official.json"


def compact(manifest: dict) -> dict:
    official = manifest["official_file"]
    return {
        "title": manifest["name"],
        "container": official["container"],
        "state_dict_key": official.get("state_dict_key"),
        "path_in_zip": official["path_in_zip_expected"],
        "tensors": [[t["key"], t["shape"], t["dtype"], bool(t.get("optional", False))] for t in manifest["tensors"]],
    }


def main(reference: Path) -> None:
    manifests = {}
    for path in sorted(reference.glob("*.json")):
        manifests[path.stem] = compact(json.loads(path.read_text(encoding="utf-8")))
    OUT.write_text(json.dumps(manifests, indent=None, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(manifests)} manifests)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "reference" / "manifests")
