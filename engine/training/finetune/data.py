"""Finding, checking and loading the user's data for fine-tuning.

* Labelled photos (detector): each photo and its mask are kept twice, at the scale the pipeline's
  detector sees (short side ``detect_side``, for training crops) and at most ``eval_side`` large (for
  held-out scores, computed exactly as a restore would).
* A deterministic share of the user's photos is held out (chosen by a hash of the file name, so the
  split does not change when photos are added in another order) and never trained on.
* Default clean photos (domain task without ``--clean``): the sample photographs that ship inside
  scikit-image, a required dependency of Heirloom; the shared training data is never shipped.
"""

from __future__ import annotations

import importlib.util
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.core.detection import network_size
from engine.io.decode import IMAGE_SUFFIXES, read_mask, read_rgb
from engine.store.masks import ACCEPTED, BRUSHED, DETECTED, ORIGINS, MaskStore
from engine.training.data import PhotoPool, list_photos, load_small
from engine.training.finetune.job import (
    DetectorData,
    DomainData,
    FinetuneSettings,
    MappingData,
    TaskData,
)

HOLDOUT_SHARE = 5  # one photo in five is held out (at least one when there are two or more)
MASK_COVERAGE = 0.25  # a downscaled mask pixel is damage when at least this much of it was
FEW_PHOTOS = 10
# scikit-image's bundled photographs (CC0 / public domain); textures, charts and micrographs left out
SAMPLE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "camera.png")


@dataclass
class DataSummary:
    """Counts and warnings for the Train tab (and the CLI) before anything is trained."""

    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def holdout(names: list[str]) -> set[str]:
    """The names held out of training: ``len // HOLDOUT_SHARE`` (at least 1 of 2 or more), chosen by
    CRC32 of the name, so adding photos rarely moves an old one across the split."""
    if len(names) < 2:
        return set()
    ranked = sorted(names, key=lambda n: (zlib.crc32(n.encode("utf-8")), n))
    return set(ranked[:max(1, len(names) // HOLDOUT_SHARE)])


def sample_clean_photos() -> list[Path]:
    """The bundled sample photos of scikit-image (empty if it is not installed)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return [folder / n for n in SAMPLE_PHOTOS if (folder / n).is_file()]


def _photos_by_stem(folder: Path) -> tuple[dict[str, Path], list[str]]:
    found: dict[str, Path] = {}
    clashes = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in found:
                clashes.append(p.stem)
            found.setdefault(p.stem, p)
    return found, clashes


def find_labelled(data: DetectorData, store: MaskStore | None = None) -> tuple[list[tuple[Path, Path]], DataSummary]:
    """(photo, mask) pairs and a summary. Masks come from ``data.masks`` (named like the photo stem)
    or, without it, from the brushed-mask store."""
    summary = DataSummary()
    pairs: list[tuple[Path, Path]] = []
    if data.masks is not None:
        if data.images is None:
            raise ValueError("a mask folder needs the folder of photos it belongs to (--images)")
        for folder, role in ((data.images, "photo"), (data.masks, "mask")):
            if not Path(folder).is_dir():
                raise ValueError(f"{role} folder {folder} not found")
        if Path(data.images).resolve() == Path(data.masks).resolve():
            raise ValueError("photos and masks must be in different folders (a mask is named like its photo)")
        photos, clashes = _photos_by_stem(Path(data.images))
        masks = {p.stem: p for p in sorted(Path(data.masks).glob("*.png")) if not p.name.startswith(".")}
        pairs = [(photos[s], masks[s]) for s in sorted(masks) if s in photos]
        orphans = sorted(set(masks) - set(photos))
        summary.counts.update(photos=len(photos), masks=len(masks), unlabelled=len(set(photos) - set(masks)))
        if orphans:
            summary.warnings.append(f"{len(orphans)} mask(s) have no photo of the same name: {', '.join(orphans[:5])}")
        if clashes:
            summary.warnings.append(f"several photos share the name {', '.join(clashes[:5])}; the first is used")
    else:
        store = store or MaskStore.default()
        root = Path(data.images).resolve() if data.images is not None else None
        origins = dict.fromkeys(ORIGINS, 0)
        for entry in store.entries():
            if root is None or entry.photo.resolve().is_relative_to(root):
                origins[entry.origin] += 1
                if entry.reviewed:  # the detector's own unreviewed output must not become a label
                    pairs.append((entry.photo, entry.mask))
        summary.counts.update(masks=len(pairs), brushed=origins[BRUSHED], accepted=origins[ACCEPTED],
                              detected_only=origins[DETECTED])
        summary.notes.append("masks: the ones painted or accepted in the Restore tab" +
                             (f" for photos in {data.images}" if root else ""))
        if origins[DETECTED]:
            summary.notes.append(f"{origins[DETECTED]} detected-only mask(s) not used: nobody painted or accepted "
                                 "them (open the photo, correct the mask or press Accept mask)")
    summary.counts["labelled"] = len(pairs)
    held = holdout([p.name for p, _ in pairs])
    summary.counts["held_out"] = len(held)
    if not pairs:
        summary.warnings.append("no labelled photos: brush damage masks in the Restore tab, or give a folder of "
                                "masks named like the photos (white = damage)")
    elif len(pairs) < 2:
        summary.warnings.append("only one labelled photo: nothing can be held out, so there are no before/after "
                                "scores")
    elif len(pairs) < FEW_PHOTOS:
        summary.warnings.append(f"only {len(pairs)} labelled photos: {FEW_PHOTOS} or more teach the detector more "
                                "reliably, and make the held-out scores meaningful")
    return pairs, summary


@dataclass
class LabelledPhoto:
    name: str
    rgb: np.ndarray  # at detector scale: HxWx3 float32 in [0, 1]
    mask: np.ndarray  # at detector scale: HxW bool
    eval_rgb: np.ndarray  # at most eval_side large: HxWx3 float32
    eval_mask: np.ndarray  # HxW bool
    positives: np.ndarray  # (K, 2) sample of damaged (y, x) at detector scale, for damage-centred crops


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bool mask -> (h, w) bool; a pixel is damage when MASK_COVERAGE of it was."""
    h, w = size
    shrink = h < mask.shape[0]
    out = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out >= MASK_COVERAGE


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float RGB -> (h, w), bilinear with antialiasing when shrinking: how the pipeline scales the
    detector's input (engine.core.detection.run_detector)."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    shrink = size[0] < rgb.shape[0] or size[1] < rgb.shape[1]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy()


def load_labelled(pairs: list[tuple[Path, Path]], settings: FinetuneSettings,
                  summary: DataSummary) -> list[LabelledPhoto]:
    """Decode each pair at both scales; unreadable or mis-sized pairs are skipped with a warning."""
    loaded = []
    skipped = []
    rng = np.random.default_rng(0)
    for photo, mask_path in pairs:
        try:
            rgb8 = read_rgb(photo)
            mask = read_mask(mask_path)
        except Exception as exc:  # unreadable file of any kind: skip it, say so
            skipped.append(f"{photo.name} ({type(exc).__name__})")
            continue
        if mask.shape != rgb8.shape[:2]:
            skipped.append(f"{photo.name} (mask {mask.shape[1]}x{mask.shape[0]}, photo {rgb8.shape[1]}x{rgb8.shape[0]})")
            continue
        h, w = mask.shape
        scale = min(1.0, settings.eval_side / max(h, w))
        eval_size = (max(16, round(h * scale)), max(16, round(w * scale)))
        if scale < 1:  # area averaging on 8 bits first: a 5000 px scan never exists as floats
            rgb8 = cv2.resize(rgb8, eval_size[::-1], interpolation=cv2.INTER_AREA)
        eval_rgb = rgb8.astype(np.float32) / 255.0
        net_size = network_size(h, w, settings.detect_side)
        net_mask = resize_mask(mask, net_size)
        pos = np.argwhere(net_mask)
        if len(pos) > 4096:
            pos = pos[rng.choice(len(pos), 4096, replace=False)]
        loaded.append(LabelledPhoto(photo.name, resize_rgb(eval_rgb, net_size), net_mask, eval_rgb,
                                    resize_mask(mask, eval_size) if scale < 1 else mask, pos))
    if skipped:
        summary.warnings.append(f"{len(skipped)} labelled photo(s) skipped: {'; '.join(skipped[:5])}")
    return loaded


def split_labelled(photos: list[LabelledPhoto]) -> tuple[list[LabelledPhoto], list[LabelledPhoto]]:
    held = holdout([p.name for p in photos])
    return [p for p in photos if p.name not in held], [p for p in photos if p.name in held]


def labelled_crops(photos: list[LabelledPhoto], rng: np.random.Generator, count: int,
                   size: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, size, size, 3) float32 crops and their (count, size, size) bool masks; half the crops
    are centred near damage (masks are sparse: random crops would mostly teach "no damage here")."""
    rgb = np.empty((count, size, size, 3), np.float32)
    masks = np.empty((count, size, size), bool)
    for i in range(count):
        p = photos[int(rng.integers(len(photos)))]
        h, w = p.mask.shape
        if len(p.positives) and rng.random() < 0.5:
            cy, cx = p.positives[int(rng.integers(len(p.positives)))]
            y = int(np.clip(cy - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, h - size))
            x = int(np.clip(cx - size // 2 + rng.integers(-size // 4, size // 4 + 1), 0, w - size))
        else:
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop, crop_mask = p.rgb[y:y + size, x:x + size], p.mask[y:y + size, x:x + size]
        if rng.random() < 0.5:
            crop, crop_mask = crop[:, ::-1], crop_mask[:, ::-1]
        rgb[i], masks[i] = crop, crop_mask
    return rgb, masks


def load_photos(paths: list[Path], side: int, min_side: int, summary: DataSummary, role: str) -> list[np.ndarray]:
    """Photos downscaled to ``side`` (long side); too small or unreadable ones skipped with a warning."""
    photos, small, broken = [], 0, 0
    for p in paths:
        img = load_small(p, side)
        if img is None:
            broken += 1
        elif min(img.shape[:2]) < min_side:
            small += 1
        else:
            photos.append(img)
    if broken:
        summary.warnings.append(f"{broken} {role} file(s) could not be read")
    if small:
        summary.warnings.append(f"{small} {role} photo(s) smaller than {min_side} px skipped")
    return photos


def split_paths(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    held = holdout([p.name for p in paths])
    return [p for p in paths if p.name not in held], [p for p in paths if p.name in held]


def clean_paths(folder: Path | None, summary: DataSummary) -> list[Path]:
    if folder is not None:
        if not Path(folder).is_dir():
            raise ValueError(f"clean photo folder {folder} not found")
        return list_photos(Path(folder))
    samples = sample_clean_photos()
    if not samples:
        raise ValueError("no clean photos: give a folder of clean (undamaged) photos")
    summary.notes.append(f"clean photos: the {len(samples)} sample photos that ship with scikit-image "
                         "(give your own clean photos for a better match to your collection)")
    return samples


@dataclass
class PhotoSets:
    """Decoded photos for the domain and mapping tasks."""

    train: PhotoPool  # scans (domain) or clean photos (mapping)
    held: list[np.ndarray]  # held-out photos of the same kind (previews and scores)
    clean: PhotoPool | None = None  # domain: clean photos for synthetic old ones


def load_photo_sets(data: DomainData | MappingData, settings: FinetuneSettings,
                    summary: DataSummary) -> PhotoSets:
    side, crop = settings.image_side, settings.crop
    if isinstance(data, DomainData):
        if not Path(data.scans).is_dir():
            raise ValueError(f"scan folder {data.scans} not found")
        main_paths, role = list_photos(Path(data.scans)), "scan"
    else:
        main_paths, role = clean_paths(data.clean, summary), "clean"
    train_paths, held_paths = split_paths(main_paths)
    train = load_photos(train_paths, side, crop, summary, role)
    held = load_photos(held_paths, side, crop, summary, role)
    summary.counts.update({f"{role}_photos": len(main_paths), "train": len(train), "held_out": len(held)})
    if not train:
        raise ValueError(f"no usable {role} photos (at least {crop} px) in {data.scans if role == 'scan' else data.clean}")
    if len(main_paths) < FEW_PHOTOS:
        summary.warnings.append(f"only {len(main_paths)} {role} photos: {FEW_PHOTOS} or more give a steadier result")
    sets = PhotoSets(PhotoPool(train), held)
    if isinstance(data, DomainData):
        clean = load_photos(clean_paths(data.clean, summary), side, crop, summary, "clean")
        if not clean:
            raise ValueError("no usable clean photos to make synthetic old photos from")
        summary.counts["clean_photos"] = len(clean)
        sets.clean = PhotoPool(clean)
    return sets


def inspect_data(data: TaskData, store: MaskStore | None = None) -> DataSummary:
    """Counts and warnings without decoding any photo (headers only): for the Train tab's folder
    pickers. Raises ValueError for folders that do not exist."""
    if isinstance(data, DetectorData):
        pairs, summary = find_labelled(data, store)
        mismatched = []
        for photo, mask in pairs[:200]:  # headers only; enough to catch a systematic problem
            try:
                with Image.open(photo) as a, Image.open(mask) as b:
                    if a.size != b.size and a.size[::-1] != b.size:
                        mismatched.append(photo.name)
            except OSError:
                mismatched.append(photo.name)
        if mismatched:
            summary.warnings.append(f"{len(mismatched)} mask(s) do not have their photo's size and will be "
                                    f"skipped: {', '.join(mismatched[:5])}")
        return summary
    summary = DataSummary()
    folder = data.scans if isinstance(data, DomainData) else data.clean
    if folder is not None and not Path(folder).is_dir():
        raise ValueError(f"folder {folder} not found")
    main = list_photos(Path(folder)) if folder is not None else []
    role = "scan" if isinstance(data, DomainData) else "clean"
    summary.counts.update({f"{role}_photos": len(main), "held_out": len(holdout([p.name for p in main]))})
    if len(main) < FEW_PHOTOS:
        summary.warnings.append(f"only {len(main)} {role} photos: {FEW_PHOTOS} or more give a steadier result")
    if isinstance(data, DomainData):
        summary.counts["clean_photos"] = len(clean_paths(data.clean, summary))
    return summary
