"""Face benchmark: our lite face generator on held-out faces, and real old portraits with faces on.

    .venv/bin/python bench/eval_faces.py --weights PATH [--face-run RUN] [--seeds 3] [--no-global]
        [--real-deoldify 4] [--side 1024] [--out bench/results/faces]

``--weights``: exported weights holding ``face_256`` (``main.py train export``), or any weights plus
``--face-run training-runs/lite/face`` to take the generator straight from a (running) face stage.

Held-out faces (``engine.training.face_data.held_out_faces``): every face the pipeline's detector finds
(score >= 0.9, as the pipeline; a look-alike or two included) in the held-out photos of
../shared/data/clean_train (``split_holdout``, never trained on) and in scikit-image's astronaut and
cameraman (never trained on). Each photo is damaged whole with ``engine.degradation.degrade``'s
unstructured damage (no scratches; ``--seeds`` damage draws per photo), and every face is cut out
with the pipeline's alignment at the landmarks found on the clean photo, so all rows compare the
same pixels against the clean aligned face (face-region PSNR / SSIM over the 256 px crop):
  (a) the damaged face;
  (b) no face stage: the face as the pipeline leaves it without refinement, i.e. the whole damaged
      photo restored by ``--weights`` with faces off, then aligned (``--no-global``: the damaged face);
  (c) the lite face generator on (b)'s face, histogram-matched to (b)'s crop as the pipeline does;
  (d) the generator on the damaged face (a) directly, matched the same way (what it was trained on).
Also writes, for real old photos (../shared/data/real_old/*.png and the first ``--real-deoldify``
photos of real_old/deoldify/ with a face), original | restored without faces | restored with faces,
and a close-up of the faces, to ``--out``. Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.core.faces import align  # noqa: E402
from engine.core.faces.stage import to_u8 as stage_u8  # noqa: E402
from engine.core.metrics import psnr, ssim  # noqa: E402
from engine.core.official import save_image_u8, to_network  # noqa: E402
from engine.core.pipeline import RestoreOptions, Restorer  # noqa: E402
from engine.degradation.degrade import degrade  # noqa: E402
from engine.device import choose_device  # noqa: E402
from engine.io.decode import read_rgb
from engine.io.encode import write_png  # noqa: E402
from engine.io.pixels import to_u8
from engine.models.checkpoints import ModelBank, WeightSource  # noqa: E402
from engine.models.registry import NetworkSpec  # noqa: E402
from engine.store.catalogue import resolve_weights  # noqa: E402
from engine.training.face_data import (  # noqa: E402
    DETECT_SIDE,
    FACE_SIZE,
    detect_landmarks,
    held_out_faces,
    load_photo,
)

DATA = ROOT.parent / "shared" / "data"
ROWS = ("(a) damaged face", "(b) no face stage", "(c) lite face generator on (b)", "(d) lite face generator on (a)")


class WithFaceRun(WeightSource):
    """``--weights`` for everything except ``face_256``, which comes from a face-stage checkpoint
    (so a run can be measured while it trains, without an export)."""

    def __init__(self, base: WeightSource, face_run: Path) -> None:
        from engine.cli.train import load_run
        from engine.training.config import CONFIGS

        self.base, state = base, load_run(face_run, "face")
        arch = CONFIGS[state["config"]].arch
        self.face_state, self.step = state["nets"]["G"], int(state["step"])
        self.face_kwargs = {"ngf": arch.face_ngf, "spade_hidden": arch.face_spade_hidden}
        self.label = f"{base.label} + face run {face_run} (step {self.step})"

    def has(self, spec: NetworkSpec) -> bool:
        return spec.name == "face_256" or self.base.has(spec)

    def state_dict(self, spec: NetworkSpec) -> dict[str, torch.Tensor]:
        return self.face_state if spec.name == "face_256" else self.base.state_dict(spec)

    def network_kwargs(self, spec: NetworkSpec) -> dict:
        return dict(self.face_kwargs) if spec.name == "face_256" else self.base.network_kwargs(spec)

    def output_tone(self) -> str:
        return self.base.output_tone()

    def tone_predictor(self):
        return self.base.tone_predictor()


def generate(net: torch.nn.Module, device: torch.device, crop_u8: np.ndarray, params: np.ndarray,
             photo_u8: np.ndarray) -> np.ndarray:
    """The face stage on one aligned crop: generator, then the pipeline's histogram matching."""
    with torch.inference_mode():
        out = net(to_network(crop_u8).to(device))
    restored = save_image_u8((out + 1.0) / 2.0, normalize=False)
    _, matched, _, _ = align.warp_back(restored, params, FACE_SIZE, image_u8=photo_u8)
    return matched


def held_out_table(restorer: Restorer, face_net: torch.nn.Module, device: torch.device, seeds: int,
                   use_global: bool, out: Path) -> None:
    faces = held_out_faces([DATA / "clean_train"], out / "heldout_faces_256.npz")
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in ROWS}
    per_face: dict[int, list[list[float]]] = {i: [] for i in range(len(faces))}  # PSNR (a)..(d) per draw
    photos: dict[str, list[int]] = {}
    for i, source in enumerate(faces.sources.tolist()):
        photos.setdefault(source, []).append(i)
    for p, (source, indices) in enumerate(photos.items()):
        clean_u8 = load_photo(source)
        for s in range(seeds):
            damaged = degrade(clean_u8.astype(np.float32) / 255.0, seed=20_000 + 100 * p + s,
                              structured_damage=False).degraded
            damaged_u8 = stage_u8(damaged)
            if use_global:
                restored = restorer.restore(damaged, RestoreOptions(scratch=False, faces=False)).image
                restored_u8 = stage_u8(restored)
            else:
                restored_u8 = damaged_u8
            for i in indices:
                params = align.similarity_to_image(faces.landmarks[i], FACE_SIZE)
                clean = align.align_face(clean_u8, params, FACE_SIZE)
                a = align.align_face(damaged_u8, params, FACE_SIZE)
                b = align.align_face(restored_u8, params, FACE_SIZE)
                c = generate(face_net, device, b, params, restored_u8)
                d = generate(face_net, device, a, params, damaged_u8)
                for name, img in zip(ROWS, (a, b, c, d)):
                    scores[name].append((psnr(img / 255.0, clean / 255.0), ssim(img / 255.0, clean / 255.0)))
                per_face[i].append([scores[name][-1][0] for name in ROWS])
                if s == 0:
                    write_png(out / f"heldout_{i:02d}_{Path(source).stem}.png", np.concatenate([a, b, c, d, clean], 1))
        print(f"held-out photo {p + 1}/{len(photos)}: {source}", file=sys.stderr)
    print(f"Held-out faces: {len(faces)} ({faces.summary()}), {seeds} damage draw(s) each, "
          f"no face stage = {'whole-photo restoration with --weights' if use_global else 'damaged face'}\n")
    print("| face | PSNR dB | SSIM |\n|---|---|---|")
    for name, values in scores.items():
        arr = np.asarray(values)
        print(f"| {name} | {arr[:, 0].mean():.2f} | {arr[:, 1].mean():.4f} |")
    b, c = np.asarray(scores[ROWS[1]]), np.asarray(scores[ROWS[2]])
    print(f"\n(c) beats (b) on {int((c[:, 0] > b[:, 0]).sum())} of {len(c)} face draws (PSNR), "
          f"{int((c[:, 1] > b[:, 1]).sum())} (SSIM). Crops: {out}/heldout_*.png = (a) | (b) | (c) | (d) | clean\n")
    print("| # | photo | score | upsampled | PSNR (a) | (b) | (c) | (d) |\n|---|---|---|---|---|---|---|---|")
    for i, values in per_face.items():
        m = np.mean(values, axis=0)
        print(f"| {i} | {Path(faces.sources[i]).name} | {faces.scores[i]:.3f} | x{faces.scales[i]:.1f} | "
              + " | ".join(f"{v:.2f}" for v in m) + " |")


def shrink(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def real_portraits(deoldify: int, side: int) -> list[Path]:
    """real_old/*.png, and the first ``deoldify`` deoldify photos in which a face is found."""
    chosen = sorted((DATA / "real_old").glob("*.png"))
    found = 0
    for path in sorted((DATA / "real_old" / "deoldify").iterdir()):
        if found >= deoldify:
            break
        photo = load_photo(str(path))
        if photo is not None and detect_landmarks(shrink(photo, min(side, DETECT_SIDE))):
            chosen.append(path)
            found += 1
    return chosen


def face_closeups(before: np.ndarray, after: np.ndarray, boxes: list) -> np.ndarray | None:
    """Each face's box (enlarged) from both images, side by side, stacked; 256 px tall rows."""
    rows = []
    h, w = before.shape[:2]
    for x0, y0, x1, y1 in boxes:
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, 0.9 * max(x1 - x0, y1 - y0)
        ys, ye = max(int(cy - r), 0), min(int(cy + r), h)
        xs, xe = max(int(cx - r), 0), min(int(cx + r), w)
        if ye - ys < 4 or xe - xs < 4:
            continue
        pair = np.concatenate([before[ys:ye, xs:xe], after[ys:ye, xs:xe]], axis=1)
        scale = 256 / pair.shape[0]
        rows.append(cv2.resize(pair, (round(pair.shape[1] * scale), 256), interpolation=cv2.INTER_CUBIC))
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)


def real_photos(restorer: Restorer, paths: list[Path], side: int, out: Path) -> None:
    print(f"\nReal old photos (long side <= {side}), full pipeline with faces on:\n")
    print("| photo | faces found | refined | seconds |\n|---|---|---|---|")
    for path in paths:
        image = shrink(read_rgb(path), side).astype(np.float32) / 255.0
        result = restorer.restore(image, RestoreOptions(scratch=path.name.startswith("scratched"), faces=True))
        report = result.faces
        without = report.compose(result.image, set()) if report is not None else result.image
        stem = f"real_{path.parent.name}_{path.stem}" if path.parent.name == "deoldify" else f"real_{path.stem}"
        write_png(out / f"{stem}.png", to_u8(np.concatenate([image, without, result.image], axis=1)))
        found = report.found if report else 0
        if report is not None and report.refined:
            close = face_closeups(to_u8(without), to_u8(result.image), [f.box for f in report.faces if f.refined])
            if close is not None:
                write_png(out / f"{stem}_faces.png", close)
        print(f"| {path.name} | {found} | {report.refined if report else 0} | "
              f"{sum(result.timings.values()):.1f} |")
    print(f"\n{out}/real_*.png = original | restored without faces | restored with faces; "
          "real_*_faces.png = close-ups without | with the face stage")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="exported weights (with face_256 unless --face-run)")
    parser.add_argument("--face-run", type=Path, help="take face_256 from this face-stage run folder instead")
    parser.add_argument("--seeds", type=int, default=3, help="damage draws per held-out photo")
    parser.add_argument("--no-global", action="store_true", help="(b) = the damaged face, no whole-photo restoration")
    parser.add_argument("--real-deoldify", type=int, default=4, help="deoldify photos with faces to run (0: none)")
    parser.add_argument("--side", type=int, default=1024, help="real photos are shrunk to this long side")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "faces")
    args = parser.parse_args()
    device = choose_device("auto").device
    source = resolve_weights(args.weights)
    if args.face_run:
        source = WithFaceRun(source, args.face_run)
    bank = ModelBank(source, device)
    face_net = bank.get("face_256")
    print(f"Weights: {source.label}; face generator {sum(p.numel() for p in face_net.parameters()) / 1e6:.2f} M "
          "parameters\n")
    args.out.mkdir(parents=True, exist_ok=True)
    restorer = Restorer(bank)
    held_out_table(restorer, face_net, device, args.seeds, not args.no_global, args.out)
    real_photos(restorer, real_portraits(args.real_deoldify, args.side), args.side, args.out)


if __name__ == "__main__":
    main()
