"""``python main.py finetune ...`` and ``python main.py profiles ...``.

    finetune detector [--images DIR] [--masks DIR] --profile NAME [common options]
    finetune domain   --scans DIR [--clean DIR]    --profile NAME [common options]
    finetune mapping  --clean DIR                  --profile NAME [common options]
        common: [--base default|official|profile:NAME|PATH] [--steps N | --minutes M] [--device ...]
                [--resume | --restart] [--crop N] [--batch N] [--lr X] [--seed N] [--work DIR]
    profiles list | delete NAME | export NAME FILE | import FILE [--name NAME] [--overwrite]

Without ``--masks`` the detector learns from the masks brushed in the Restore tab (for photos in
``--images`` when given). ``--resume`` continues the unfinished (or finished, with a larger budget)
fine-tune of that profile and needs no folders repeated; the profile is written when the budget is
spent. Exit status: 0 done, 1 failed or stopped (a checkpoint is kept), 2 usage errors.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TextIO

from engine.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ProgressBar,
    stop_gracefully_on_signals,
)
from engine.device import DeviceError, choose_device
from engine.models.checkpoints import CheckpointError
from engine.progress import Cancelled, Progress
from engine.store.profiles import (
    ProfileError,
    delete_profile,
    export_profile,
    import_profile,
    list_profiles,
    profiles_dir,
    validate_name,
)
from engine.training.finetune.session import (
    Budget,
    DetectorData,
    DomainData,
    FinetuneJob,
    FinetuneSession,
    FinetuneSettings,
    MappingData,
    default_work_dir,
    load_job,
)

DEFAULT_MINUTES = 15.0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", required=True, metavar="NAME", help="name of the profile to create")
    common.add_argument("--base", help="weights to start from: default, official, profile:NAME or a weights folder "
                                       "(default: default)")
    budget = common.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, metavar="N", help="train N steps in all")
    budget.add_argument("--minutes", type=float, metavar="M",
                        help=f"train M minutes in all (default {DEFAULT_MINUTES:g})")
    common.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    again = common.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue this profile's earlier fine-tune")
    again.add_argument("--restart", action="store_true", help="discard this profile's earlier fine-tune, start over")
    common.add_argument("--crop", type=int, metavar="N", help="training crop in pixels (default 128)")
    common.add_argument("--batch", type=int, metavar="N", help="crops per step (default 4)")
    common.add_argument("--lr", type=float, help="learning rate (default 1e-4)")
    common.add_argument("--seed", type=int)
    common.add_argument("--work", type=Path, metavar="DIR", help="checkpoint folder (default: in the user data folder)")

    f = sub.add_parser("finetune", help="fine-tune the weights on your own photos into a named profile")
    tasks = f.add_subparsers(dest="task", required=True)
    d = tasks.add_parser("detector", parents=[common], help="teach the scratch detector with your masks")
    d.add_argument("--images", type=Path, metavar="DIR", help="your photos")
    d.add_argument("--masks", type=Path, metavar="DIR",
                   help="masks named like the photos, white = damage (default: the masks brushed in the app)")
    s = tasks.add_parser("domain", parents=[common], help="adapt the encoder to your old scans")
    s.add_argument("--scans", type=Path, metavar="DIR", help="your old scans")
    s.add_argument("--clean", type=Path, metavar="DIR",
                   help="clean photos to make synthetic old ones from (default: scikit-image's sample photos)")
    m = tasks.add_parser("mapping", parents=[common], help="learn the restoration from your clean photos")
    m.add_argument("--clean", type=Path, metavar="DIR", help="your clean (undamaged) photos")
    f.set_defaults(func=cmd_finetune)

    p = sub.add_parser("profiles", help="list, delete, export or import fine-tuned profiles")
    psub = p.add_subparsers(dest="profiles_command")
    psub.add_parser("list", help="list the profiles")
    de = psub.add_parser("delete", help="delete a profile")
    de.add_argument("name")
    ex = psub.add_parser("export", help="write a profile as one file")
    ex.add_argument("name")
    ex.add_argument("file", type=Path)
    ex.add_argument("--overwrite", action="store_true")
    im = psub.add_parser("import", help="install a profile file (checked completely first)")
    im.add_argument("file", type=Path)
    im.add_argument("--name", help="install under this name (default: the name inside the file)")
    im.add_argument("--overwrite", action="store_true", help="replace a profile of the same name")
    p.set_defaults(func=cmd_profiles)


class _Usage(Exception):
    pass


def _data(args: argparse.Namespace, previous: FinetuneJob | None):
    """The task's folders from the arguments, else (with --resume) from the earlier job."""
    old = previous.data if previous is not None and previous.task == args.task else None
    if args.task == "detector":
        if args.images is None and args.masks is None and old is not None:
            return old
        return DetectorData(args.images, args.masks)
    if args.task == "domain":
        if args.scans is None:
            if old is None:
                raise _Usage("finetune domain needs --scans DIR")
            return old
        return DomainData(args.scans, args.clean)
    if args.clean is None:
        if old is None:
            raise _Usage("finetune mapping needs --clean DIR")
        return old
    return MappingData(args.clean)


def _settings(args: argparse.Namespace, previous: FinetuneJob | None) -> FinetuneSettings:
    base = previous.settings if previous is not None else FinetuneSettings()
    given = {k: getattr(args, k) for k in ("crop", "batch", "lr", "seed") if getattr(args, k) is not None}
    try:
        return FinetuneSettings(**{**vars(base), **given})
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def _budget(args: argparse.Namespace, previous: FinetuneJob | None) -> Budget:
    try:
        if args.steps is not None:
            return Budget(steps=args.steps)
        if args.minutes is not None:
            return Budget(minutes=args.minutes)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    return previous.budget if previous is not None else Budget(minutes=DEFAULT_MINUTES)


def build_job(args: argparse.Namespace) -> FinetuneJob:
    work = args.work or default_work_dir(args.profile)
    previous = load_job(work) if args.resume else None
    base = args.base or (previous.base if previous is not None else "default")
    return FinetuneJob(_data(args, previous), work, base, _budget(args, previous), _settings(args, previous))


def _format(metrics: dict) -> str:
    keys = ("f1", "precision", "recall", "domain_gap", "anchor_l1", "psnr_quality", "psnr_scratch")
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys if k in metrics) or "no held-out scores"


def cmd_finetune(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:

    try:
        validate_name(args.profile)
        job = build_job(args)
        choice = choose_device(args.device)
    except (_Usage, ProfileError, DeviceError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    if choice.note:
        print(f"warning: {choice.note}", file=err)
    replace = args.resume or args.restart
    if (profiles_dir() / args.profile).exists() and not replace:
        print(f"error: a profile named {args.profile!r} already exists; choose another name, delete it "
              f"(`profiles delete {args.profile}`), or pass --restart to replace it", file=err)
        return EXIT_FAILED
    if args.restart:
        shutil.rmtree(job.work, ignore_errors=True)
    session = FinetuneSession(job, choice.device)
    if session.has_checkpoint() and not args.resume:
        print(f"error: an earlier fine-tune of {args.profile!r} is in {job.work}; continue it with --resume or "
              "start over with --restart", file=err)
        return EXIT_FAILED
    try:
        summary = session.prepare()
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except CheckpointError as exc:
        print(f"error: base weights {job.base!r}: {exc}", file=err)
        return EXIT_FAILED
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.counts.items())
    print(f"finetune {job.task} from {job.base}: {counts}; budget {job.budget.describe()}", file=err)
    for line in summary.notes:
        print(f"note: {line}", file=err)
    for line in summary.warnings:
        print(f"warning: {line}", file=err)
    stop_gracefully_on_signals()
    bar = ProgressBar(f"finetune {job.task}", err)
    try:
        for _ in session.run(resume=args.resume, progress=Progress(bar)):
            pass
    except (FileExistsError, ValueError, CheckpointError) as exc:
        bar.close()
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    except (Cancelled, KeyboardInterrupt):
        bar.close()
        print(f"stopped at step {session.step}; continue with --resume (checkpoint in {job.work})", file=err)
        return EXIT_FAILED
    bar.close()
    try:
        profile = session.save_profile(args.profile, overwrite=replace)
    except (ProfileError, ValueError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    before, after = profile.metrics.get("before", {}), profile.metrics.get("after", {})
    print(f"held-out before: {_format(before)}", file=out)
    print(f"held-out after:  {_format(after)}", file=out)
    print(f"profile {profile.name!r} saved in {profile.folder} after {session.step} steps; restore with "
          f"--weights profile:{profile.name} (train more: the same command with --resume and a larger budget)",
          file=out)
    return EXIT_OK


def cmd_profiles(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    command = args.profiles_command or "list"
    try:
        if command == "list":
            profiles = list_profiles()
            if not profiles:
                print("no profiles yet; make one with `python main.py finetune ...`", file=out)
            for p in profiles:
                print(f"{p.name:<24} {p.describe()}", file=out)
        elif command == "delete":
            delete_profile(args.name)
            print(f"deleted profile {args.name!r}", file=out)
        elif command == "export":
            dest = export_profile(args.name, args.file, overwrite=args.overwrite)
            print(f"exported profile {args.name!r} to {dest}", file=out)
        elif command == "import":
            profile = import_profile(args.file, name=args.name, overwrite=args.overwrite)
            print(f"imported profile {profile.name!r} ({profile.describe()}); use --weights profile:{profile.name}",
                  file=out)
    except ProfileError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_FAILED
    return EXIT_OK
