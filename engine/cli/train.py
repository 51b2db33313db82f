"""``python main.py train ...``: run a training stage, or export trained runs as shipped weights.

    train {vae-a,vae-b,mapping,detector,joint,face} --config lite|full|tiny|gpu --out DIR [--resume] [--steps N]
          [--device ...] [--clean DIR ...] [--old DIR ...] [--vae-a RUN] [--vae-b RUN] [--seed N]
          [--minutes M] [--amp off|bf16|fp16] [--workers N]
    train refine --weights DIR --out RUN [--config lite]   (the full-resolution refinement behind DIR's chain)
    train export-refine --run RUN --dest DIR [--weights DIR]   (DIR's copy with the refinement added)
    train export --runs DIR --dest DIR [--name NAME]     (DIR holds vae-a/, vae-b/, mapping/, detector/,
                                                          and optionally joint/ and face/)
    train recipe --config gpu --out DIR --minutes 10 --device cuda --amp bf16 --workers N [--with joint face]
          every stage in one process within one time budget, then the export (scripts/train_gpu.sh):
          DIR/runs/<stage>/ (checkpoints, metrics, samples), DIR/weights/, DIR/recipe.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import torch

from engine.cli.common import ProgressBar, stop_gracefully_on_signals
from engine.device import DeviceError, choose_device
from engine.models.networks.vae import VAEGenerator
from engine.progress import Cancelled, Progress
from engine.core.detection import OFFICIAL_THRESHOLD
from engine.training.amp import AMP_MODES, MixedPrecision
from engine.training.calibrate import calibrate_detector
from engine.training.config import CONFIGS
from engine.training.data import PhotoPool, list_photos, load_small, split_holdout
from engine.training.labelled import LabelledPool
from engine.training.refine_train import RefineTrainer
from engine.training.ship_detector import ship_detector
from engine.training.ship_refine import ship_refine
from engine.store.weights import default_dir
from engine.training.face_data import training_faces
from engine.training.face_train import FaceTrainer
from engine.training.loop import CHECKPOINT, export_weights, train
from engine.training.strength_fit import fit_strength
from engine.training.tone_fit import fit_tone_predictor, training_photos
from engine.training.trainers import (
    DetectorTrainer,
    JointTrainer,
    MappingTrainer,
    VAETrainer,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
STAGES = ("vae-a", "vae-b", "mapping", "detector")  # the paper's stages: export needs all four
# ours; when a run exists, export takes the restoration networks from joint/ and adds face_256 from face/
OPTIONAL_STAGES = ("joint", "face")
# trained behind the chain of a finished weights folder (--weights), shipped into a copy of it (export-refine)
REFINE_STAGE = "refine"
RECIPE_ORDER = ("vae-b", "vae-a", "mapping", "detector", "joint", "face")  # each after the runs it builds on
FACE_CACHE = "faces_256.npz"  # the face stage's aligned training faces, cached in its run folder


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a stage of the networks, or export trained weights")
    t.add_argument("stage", choices=STAGES + OPTIONAL_STAGES + (REFINE_STAGE, "export", "export-detector",
                                                                   "export-refine", "recipe"))
    t.add_argument("--config", choices=sorted(CONFIGS), default="lite")
    t.add_argument("--out", type=Path, help="run folder (checkpoint, metrics.jsonl, samples/)")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--steps", type=int, help="total steps (default: the configuration's)")
    t.add_argument("--device", default="auto")
    t.add_argument("--minutes", type=float, help="wall-clock budget: stop with a checkpoint before a step that "
                   "would end later (recipe: for all its stages together, the export after it not counted)")
    t.add_argument("--amp", choices=AMP_MODES, default="off",
                   help="mixed precision on CUDA (bf16: Ampere and newer; fp16 with loss scaling)")
    t.add_argument("--workers", type=int, default=0,
                   help="data worker processes making the degraded batches (0: in this process)")
    t.add_argument("--with", dest="extra_stages", nargs="+", choices=OPTIONAL_STAGES, default=[],
                   help="recipe: also train these optional stages")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--clean", type=Path, nargs="+", default=[SHARED_DATA / "clean_train"], help="clean photos (Y)")
    t.add_argument("--old", type=Path, nargs="+", default=[SHARED_DATA / "real_old"], help="real old scans (R)")
    t.add_argument("--real-masks", type=Path, help="detector: a labelled set of real damaged photos "
                   "(manifest.json + <stem>_mask.png, e.g. bench/real_masks); its calib split is trained on")
    t.add_argument("--data-root", type=Path, default=SHARED_DATA, help="where the labelled set's photo paths start")
    t.add_argument("--run", type=Path, help="export-detector: the detector run to ship")
    t.add_argument("--weights", type=Path, help="export-detector / export-refine: the weights folder whose other "
                   "networks are kept; refine: the weights whose chain it trains behind (default: Heirloom's own)")
    t.add_argument("--init-from", type=Path, help="start a new run from another run's checkpoint (same stage)")
    t.add_argument("--vae-a", type=Path, help="trained vae-a run (default: <out>/../vae-a)")
    t.add_argument("--vae-b", type=Path, help="trained vae-b run (default: <out>/../vae-b)")
    t.add_argument("--runs", type=Path, help="export: folder holding the four stage runs")
    t.add_argument("--dest", type=Path, help="export: destination weights folder")
    t.add_argument("--name", help="export: weights name for the model card (default heirloom-lite-v1; "
                   "recipe: heirloom-<config>)")
    t.add_argument("--without", nargs="+", choices=OPTIONAL_STAGES, default=[],
                   help="export: leave out these optional stages' runs (e.g. a face model that does not help yet)")
    t.set_defaults(func=cmd_train)


def build_trainer(stage: str, config_name: str, device: torch.device, args: argparse.Namespace):

    config = CONFIGS[config_name]
    if stage == "face":  # trains on aligned faces, not on crops of the photos

        faces = training_faces(args.clean, args.out / FACE_CACHE)
        print(f"face stage: {faces.summary()} (cached in {args.out / FACE_CACHE})", file=sys.stderr)
        return FaceTrainer(config, device, faces, args.seed)
    crop = config.stage(stage).crop
    clean = PhotoPool.from_folders(args.clean, config.image_cache_side, crop)
    if stage == REFINE_STAGE:
        return RefineTrainer(config, device, clean, args.weights or default_dir(), args.seed)
    if stage == "vae-a":
        old = PhotoPool.from_folders(args.old, config.image_cache_side, crop, holdout=False)
        return VAETrainer(config, device, clean, old, "A", args.seed)
    if stage == "vae-b":
        return VAETrainer(config, device, clean, None, "B", args.seed)
    if stage == "detector":
        labelled = LabelledPool.from_manifest(args.real_masks, args.data_root) if args.real_masks else None
        return DetectorTrainer(config, device, clean, args.seed, labelled=labelled)
    vae_a = load_vae(args.vae_a or args.out.parent / "vae-a", config_name, "vae-a")
    vae_b = load_vae(args.vae_b or args.out.parent / "vae-b", config_name, "vae-b")
    if stage == "joint":
        mappings = load_run(args.out.parent / "mapping", "mapping")["nets"]
        return JointTrainer(config, device, clean, vae_a, vae_b, mappings, args.seed)
    return MappingTrainer(config, device, clean, vae_a, vae_b, args.seed)


def load_run(run: Path, stage: str) -> dict:
    path = Path(run) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(f"no {stage} checkpoint at {path}; train that stage first")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["stage"] != stage:
        raise ValueError(f"{path} is a {state['stage']} checkpoint, expected {stage}")
    return state


def load_vae(run: Path, config_name: str, stage: str):

    state = load_run(run, stage)
    net = VAEGenerator(CONFIGS[config_name].arch.vae_channels)
    net.load_state_dict(state["nets"]["G"])
    return net


def calibration_photos(folders: list[Path], count: int = 24, side: int = 384) -> list:
    """Training (not held-out) photos for the detector's calibration, spread over the folders."""

    paths = [p for folder in folders for p in split_holdout(list_photos(Path(folder)))[0]]
    step = max(len(paths) // count, 1)
    photos = [load_small(p, side) for p in paths[::step][:count]]
    return [p.astype("float32") / 255.0 for p in photos if p is not None]


def export(args: argparse.Namespace, out: TextIO) -> int:
    config_names = set()
    parts: dict[str, dict] = {}
    steps = {}
    for stage in STAGES:
        state = load_run(args.runs / stage, stage)
        config_names.add(state["config"])
        steps[stage] = state["step"]
        nets = state["nets"]
        if stage == "vae-a":
            parts["VAE_A_quality"] = nets["G"]
        elif stage == "vae-b":
            parts["VAE_B_quality"] = parts["VAE_B_scratch"] = nets["G"]
        elif stage == "mapping":
            parts["mapping_quality"], parts["mapping_scratch"] = nets["quality"], nets["scratch"]
        else:
            parts["detector"] = nets.get("U_ema", nets["U"])  # the weight average (older runs: U itself)
    def wanted(stage: str) -> bool:
        return stage not in getattr(args, "without", []) and (args.runs / stage / CHECKPOINT).exists()

    if wanted("joint"):  # the end-to-end fine-tune replaces the chains
        state = load_run(args.runs / "joint", "joint")
        config_names.add(state["config"])
        steps["joint"] = state["step"]
        nets = state["nets"]
        parts.update(VAE_A_quality=nets["vae_a"], VAE_B_quality=nets["vae_b_quality"],
                     VAE_B_scratch=nets["vae_b_scratch"], mapping_quality=nets["quality"],
                     mapping_scratch=nets["scratch"])
    if wanted("face"):  # our face generator: the pipeline's face stage runs with it
        state = load_run(args.runs / "face", "face")
        config_names.add(state["config"])
        steps["face"] = state["step"]
        parts["face_256"] = state["nets"]["G"]
    if len(config_names) != 1:
        raise ValueError(f"the runs mix configurations {sorted(config_names)}")
    config = CONFIGS[config_names.pop()]
    kwargs = config.arch.network_kwargs()
    photos = calibration_photos(args.clean)  # training photos for the detector and strength fits
    parts["detector"], calibration = calibrate_detector(parts["detector"], config.arch.detector_width_log2, photos)
    card = {"name": args.name or "heirloom-lite-v1", "config": config.to_json(), "steps": steps,
            "output_tone": config.output_tone,
            "networks": {name: kwargs[name] for name in parts},
            "detector_calibration": calibration.to_json(),
            # exact attention only where it reaches a hole (bench/attention_rows.py measures the difference)
            "attention_rows": "holes",
            # our detectors train on crops at the photo's own resolution (docs/benchmarks/detection-scale.md)
            "detection_scale": "auto",
            "data": {"clean": [str(p) for p in args.clean], "old": [str(p) for p in args.old]}}
    if config.output_tone == "predicted":

        card["tone_predictor"] = fit_tone_predictor(training_photos(args.clean)).to_json()
    card = export_weights(parts, args.dest, card)
    if config.output_tone != "model":  # our weights: how much of their restoration to apply by default

        card.update(fit_strength(args.dest, calibration_photos(args.clean, count=64)).to_card())
        (args.dest / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    print(f"exported {len(parts)} networks to {args.dest}"
          + (f" (default strength {card['default_strength']})" if "default_strength" in card else ""), file=out)
    return 0


def export_detector(args: argparse.Namespace, out: TextIO) -> int:
    """A weights folder with the run's detector, calibrated on real damage when --real-masks is given."""

    labelled = LabelledPool.from_manifest(args.real_masks, args.data_root) if args.real_masks else None
    photos = calibration_photos(args.clean)  # synthetic damage: the calibration without real masks, else its guard
    card = ship_detector(args.run, args.weights or default_dir(), args.dest, labelled, photos)
    calibration = card["detector_calibration"]
    print(f"exported the detector of {args.run} (step {card['steps']['detector']}) into {args.dest}; "
          f"threshold {calibration['best_threshold']} moved to {OFFICIAL_THRESHOLD}", file=out)
    if "at_0.4_after" in calibration:
        print("real calib split, mean P/R/F1 at 0.4: before " + json.dumps(calibration["at_0.4_before"])
              + ", after " + json.dumps(calibration["at_0.4_after"])
              + f"; synthetic F1 after {calibration.get('synthetic_f1_after')} (floor {calibration.get('synthetic_f1_floor')})",
              file=out)
    return 0


def export_refine(args: argparse.Namespace, out: TextIO) -> int:
    """A weights folder with the run's refinement behind the chain it trained with, strength refitted."""
    weights = args.weights or default_dir()
    card = ship_refine(args.run, weights, args.dest, calibration_photos(args.clean, count=64))
    print(f"exported the refinement of {args.run} (step {card['steps']['refine']}) into {args.dest}, behind "
          f"{weights}; default strength {card.get('default_strength')}", file=out)
    return 0


RUN_EXPORTS = {"export-detector": export_detector, "export-refine": export_refine}


@dataclass
class StageResult:
    code: int  # exit code
    total: int = 0  # the steps the stage trains to
    last: dict = field(default_factory=dict)  # the last step's metrics (empty: no step taken)
    steps_run: int = 0  # steps taken by this run (not counting the ones resumed from)

    def summary(self) -> dict:
        seconds = self.last.get("seconds")
        return {"step": self.last.get("step"), "of": self.total, "steps_run": self.steps_run,
                "steps_per_second": round(self.steps_run / seconds, 2) if seconds else None}


def train_stage(args: argparse.Namespace, device: torch.device, amp: MixedPrecision, deadline: float | None,
                err: TextIO) -> StageResult:
    """Train ``args.stage`` into ``args.out``, until its steps are done or ``deadline``."""
    try:
        trainer = build_trainer(args.stage, args.config, device, args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=err)
        return StageResult(1)
    trainer.amp = amp
    result = StageResult(1, args.steps if args.steps is not None else trainer.cfg.steps)
    stop_gracefully_on_signals()
    bar = ProgressBar(f"train {args.stage}", err)
    try:
        for metrics in train(trainer, args.out, args.steps, args.resume, Progress(bar), init_from=args.init_from,
                             deadline=deadline, workers=args.workers):
            result.last = metrics
            result.steps_run += 1
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=err)
        return result
    except (Cancelled, KeyboardInterrupt):
        bar.close()
        print(f"stopped; resume with --resume (checkpoint in {args.out})", file=err)
        return result
    bar.close()
    if result.last and result.last["step"] < result.total:
        print(f"{args.stage}: time budget spent at step {result.last['step']} of {result.total}; continue with "
              f"--resume (checkpoint in {args.out})", file=err)
    result.code = 0
    return result


def recipe(args: argparse.Namespace, device: torch.device, amp: MixedPrecision, started: float,
           out: TextIO, err: TextIO) -> int:
    """Every stage of ``args.config`` into one folder, then the export: ``<out>/runs/<stage>/``,
    ``<out>/weights/`` and ``<out>/recipe.json`` (what each stage did in how long, for tuning the
    next run). The budget is shared: each stage gets the time left divided by the stages left, so
    time a stage does not use (it reached its steps, or started fast) goes to the next ones.
    Stages with a checkpoint resume: running the recipe again trains every stage further."""
    root = Path(args.out)
    runs = root / "runs"
    stages = [s for s in RECIPE_ORDER if s in STAGES or s in args.extra_stages]
    budget_end = started + args.minutes * 60 if args.minutes is not None else None
    summary: dict = {"config": args.config, "device": str(device), "amp": amp.mode, "workers": args.workers,
                     "minutes": args.minutes, "stages": {}}

    def write_summary() -> None:
        summary["seconds"] = round(time.monotonic() - started, 1)
        (root / "recipe.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    root.mkdir(parents=True, exist_ok=True)
    for i, stage in enumerate(stages):
        now = time.monotonic()
        deadline = None if budget_end is None else now + max(budget_end - now, 0.0) / (len(stages) - i)
        run = runs / stage
        stage_args = argparse.Namespace(**{**vars(args), "stage": stage, "out": run,
                                           "resume": (run / CHECKPOINT).exists(),
                                           "init_from": None, "vae_a": None, "vae_b": None})
        result = train_stage(stage_args, device, amp, deadline, err)
        seconds = time.monotonic() - now
        summary["stages"][stage] = {**result.summary(), "seconds": round(seconds, 1),
                                    "budget_seconds": None if deadline is None else round(deadline - now, 1)}
        if result.code != 0:
            write_summary()
            return result.code
        print(f"{stage}: step {result.last.get('step', result.total)}/{result.total} in {seconds:.0f} s", file=out)
    now = time.monotonic()
    export_args = argparse.Namespace(**{**vars(args), "runs": runs, "dest": root / "weights",
                                        "name": args.name or f"heirloom-{args.config}",
                                        "without": [s for s in OPTIONAL_STAGES if s not in args.extra_stages]})
    try:
        code = export(export_args, out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=err)
        code = 1
    except KeyboardInterrupt:
        print(f"stopped during the export; run the recipe again to export (the runs are kept in {runs})", file=err)
        code = 1
    summary["export_seconds"] = round(time.monotonic() - now, 1)
    write_summary()
    return code


def cmd_train(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    started = time.monotonic()  # a --minutes budget counts from here: loading photos is part of a stage
    if args.stage in RUN_EXPORTS:  # one run into a copy of a weights folder
        if not args.run or not args.dest:
            print(f"error: {args.stage} needs --run and --dest", file=err)
            return 2
        try:
            return RUN_EXPORTS[args.stage](args, out)
        except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
            print(f"error: {exc}", file=err)
            return 1
    if args.stage == "export":
        if not args.runs or not args.dest:
            print("error: export needs --runs and --dest", file=err)
            return 2
        try:
            return export(args, out)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=err)
            return 1
    if args.out is None:
        print("error: --out DIR is required", file=err)
        return 2
    try:
        choice = choose_device(args.device)
    except DeviceError as exc:  # a misspelt device is a usage error, like the other commands'
        print(f"error: {exc}", file=err)
        return 2
    if choice.note:
        print(f"warning: {choice.note}", file=err)
    if args.workers < 0 or (args.minutes is not None and args.minutes <= 0):
        print("error: --workers must be 0 or more and --minutes more than 0", file=err)
        return 2
    try:
        amp = MixedPrecision(choice.device, args.amp)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    if choice.device.type == "cuda":  # fixed crop sizes: let cuDNN pick its fastest convolutions once
        torch.backends.cudnn.benchmark = True
    if args.stage == "recipe":
        return recipe(args, choice.device, amp, started, out, err)
    deadline = started + args.minutes * 60 if args.minutes is not None else None
    result = train_stage(args, choice.device, amp, deadline, err)
    if result.code != 0:
        return result.code
    print("finished: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in result.last.items()),
          file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heirloom")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
