"""The command line: restore end to end, failures per photo, usage errors, weights management."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import DATA, FACE_FILES, GLOBAL_FILES, ROOT, serve_folder
from PIL import Image

from engine.cli.app import build_parser, main
from engine.core import pipeline
from engine.core.detection import parse_detection_scale
from engine.core.pipeline import Restorer
from engine.core.plan import parse_tile
from engine.jobs import batch
from engine.store import paths, weights

SCRATCHED = DATA / "real_old" / "scratched_a.png"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def small_photo(path: Path, size=(44, 36)) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HEIRLOOM_DATA_DIR", str(tmp_path / "userdata"))
    return tmp_path / "userdata"


@pytest.fixture(scope="module")
def real_old_photo(tmp_path_factory) -> Path:
    """The cracked right half of a real old scan (RGBA, as the file is), cut to an odd 251 x 201: the
    whole 496 x 624 photo costs a minute per mode on one core, nearly all of it in the scratch and HR
    mappings' global attention, which grows with the square of the area; the size rules are the same."""
    path = tmp_path_factory.mktemp("real-old") / "scratched_a.png"
    with Image.open(SCRATCHED) as src:
        assert src.mode == "RGBA"
        src.crop((245, 151, 496, 352)).save(path)
    return path


@pytest.mark.parametrize("flags,mode", [(["--no-scratch"], "quality"), (["--scratch"], "scratch"), (["--hr"], "hr")])
def test_restores_a_real_old_photo_at_its_exact_size(tmp_path, official_zip, real_old_photo, flags, mode):
    code, out, err = run("restore", real_old_photo, "-o", tmp_path / "out", "--weights", official_zip,
                         "--device", "cpu", "--save-mask", *flags)
    assert code == 0, out + err
    assert f"({mode}," in out
    with Image.open(real_old_photo) as src, Image.open(tmp_path / "out" / "scratched_a.png") as res:
        assert src.size == (251, 201)
        assert res.size == src.size and res.mode == src.mode  # RGBA stays RGBA: alpha is carried through
    assert (tmp_path / "out" / "scratched_a_mask.png").exists() == (mode != "quality")


def test_bad_inputs_fail_one_by_one_and_the_rest_go_on(tmp_path, official_zip):
    good = small_photo(tmp_path / "good.png")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo")
    before = good.read_bytes()
    code, out, _ = run("restore", tmp_path / "missing.png", text, good, "-o", tmp_path / "out",
                       "--weights", official_zip)
    assert code == 1
    assert f"FAILED {tmp_path / 'missing.png'}: file not found" in out
    assert f"FAILED {text}: not an image file" in out
    assert f"OK {good}" in out
    assert Image.open(tmp_path / "out" / "good.png").size == (44, 36)
    assert good.read_bytes() == before


def test_never_overwrites_an_input_and_keeps_existing_outputs(tmp_path, official_zip):
    photo = small_photo(tmp_path / "album" / "p.png") if (tmp_path / "album").mkdir() is None else None
    before = photo.read_bytes()
    code, out, _ = run("restore", photo, "-o", tmp_path / "album", "--weights", official_zip)
    assert code == 1 and "would overwrite an input photo" in out
    assert photo.read_bytes() == before
    code, out, _ = run("restore", tmp_path / "album", "-o", tmp_path / "out", "--weights", official_zip)
    assert code == 0
    first = (tmp_path / "out" / "p.png").stat().st_mtime_ns
    code, out, _ = run("restore", tmp_path / "album", "-o", tmp_path / "out", "--weights", official_zip)
    assert code == 0 and "SKIPPED" in out and (tmp_path / "out" / "p.png").stat().st_mtime_ns == first


def test_user_mask_is_used(tmp_path, official_zip):
    photo = small_photo(tmp_path / "p.png")
    mask = np.zeros((36, 44), np.uint8)
    mask[10:14, 4:40] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    code, out, _ = run("restore", photo, "-o", tmp_path / "out", "--mask", tmp_path / "m.png", "--save-mask",
                       "--weights", official_zip)
    assert code == 0 and "(scratch," in out
    saved = np.asarray(Image.open(tmp_path / "out" / "p_mask.png")) > 0
    assert (saved == (mask > 0)).all()


@pytest.mark.parametrize("argv,needle", [
    ([], "required"),
    (["restore", "a.png", "b.png", "-o", "out", "--mask", "m.png"], "exactly one input"),
    (["restore", "a.png", "-o", "out", "--device", "tpu"], "unknown device"),
    (["restore", "a.png"], "required"),
    (["restore", "a.png", "-o", "out", "--weights", "/nonexistent/w.zip"], None),
])
def test_usage_errors_exit_2(tmp_path, capsys, argv, needle):
    code, out, err = run(*argv)
    captured = capsys.readouterr()
    if needle is None:  # a missing weights path is reported as a failure of the run, in one line
        assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1
        return
    assert code == 2
    assert needle in err + captured.err


@pytest.mark.parametrize("command", [["train", "detector", "--config", "tiny", "--out", "{tmp}/run"],
                                     ["finetune", "detector", "--profile", "mine", "--work", "{tmp}/work"]])
def test_training_commands_report_an_unknown_device_in_one_line_and_exit_2(tmp_path, command):
    """``--device gpu`` is a typo, not a crash: the same one-line usage error as ``restore`` gives."""
    code, out, err = run(*(arg.format(tmp=tmp_path) for arg in command), "--device", "gpu")
    assert code == 2
    assert err.strip().splitlines() == ["error: unknown device 'gpu'; use auto, cpu, cuda, cuda:N or mps"]


@pytest.mark.parametrize("flag,text,parse", [("--tile", "huge", parse_tile), ("--tile", "32", parse_tile),
                                             ("--detect-scale", "100", parse_detection_scale)])
def test_tile_and_detection_scale_errors_are_the_engine_parsers_words(tmp_path, capsys, flag, text, parse):
    with pytest.raises(ValueError) as refused:
        parse(text)
    code, _, _ = run("restore", "a.png", "-o", tmp_path / "out", flag, text)
    assert code == 2 and f"argument {flag}: {refused.value}" in capsys.readouterr().err


def test_the_cli_reads_tile_and_detection_scale_as_the_gui_and_options_do():
    """One parser each: what the GUI's tile combo accepts (any case, spaces) the CLI accepts too."""
    args = build_parser().parse_args(["restore", "a.png", "-o", "out", "--tile", " AUTO", "--detect-scale", "Full"])
    assert (args.tile, args.detect_scale) == ("auto", "full")
    assert build_parser().parse_args(["detect", "a.png", "-o", "out", "--detect-scale", "384"]).detect_scale == 384


def test_default_weights_ship_and_restore_out_of_the_box(tmp_path):
    """A fresh checkout restores with no download: the shipped card's files are all there, unaltered."""
    import hashlib
    import json

    from engine.store.paths import DEFAULT_WEIGHTS_DIR

    card = json.loads((DEFAULT_WEIGHTS_DIR / "model.json").read_text())
    for name, digest in card["files"].items():
        assert hashlib.sha256((DEFAULT_WEIGHTS_DIR / name).read_bytes()).hexdigest() == digest, name
    assert sum((DEFAULT_WEIGHTS_DIR / n).stat().st_size for n in card["files"]) < 50 * 2**20
    photo = small_photo(tmp_path / "p.png", size=(96, 64))
    code, out, err = run("restore", photo, "-o", tmp_path / "out", "--scratch")
    assert code == 0, err
    assert Image.open(tmp_path / "out" / "p.png").size == (96, 64)


def test_the_weights_docstring_names_the_folder_the_default_weights_are_in():
    """The module docstring is where a reader looks for the shipped weights: it must name their real folder."""
    folder = paths.DEFAULT_WEIGHTS_DIR.relative_to(ROOT).as_posix()
    assert (paths.DEFAULT_WEIGHTS_DIR / "model.json").is_file()
    assert f"``{folder}``" in weights.__doc__


def test_missing_default_weights_say_what_to_do(tmp_path, monkeypatch):
    import engine.store.catalogue
    import engine.store.paths
    import engine.store.weights

    monkeypatch.setattr(engine.store.paths, "DEFAULT_WEIGHTS_DIR", tmp_path / "not-installed")
    photo = small_photo(tmp_path / "p.png")
    code, out, err = run("restore", photo, "-o", tmp_path / "out")
    assert code == 1
    assert "default weights are not installed" in err and "models download official" in err
    assert len(err.strip().splitlines()) == 1


def test_wrong_and_truncated_checkpoint_zips_give_one_clear_line(tmp_path, official_zip):
    photo = small_photo(tmp_path / "p.png")
    wrong = tmp_path / "wrong.zip"
    with zipfile.ZipFile(wrong, "w") as zf:
        zf.writestr("readme.txt", "hello")
    code, _, err = run("restore", photo, "-o", tmp_path / "out", "--weights", wrong)
    assert code == 1 and "is this the official global_checkpoints.zip" in err and len(err.strip().splitlines()) == 1
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(official_zip.read_bytes()[: 50_000_000])
    code, _, err = run("restore", photo, "-o", tmp_path / "out", "--weights", truncated)
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "p.png").exists()


def test_models_import_then_list_then_restore_with_official(tmp_path, official_archives, data_dir):
    """Layout-only archives (every key, shape and dtype of the official files, zero values, kilobytes):
    validated, installed, listed and loaded strictly for a restore like the real ones; nothing here
    looks at the restored values (copying 800 MB of recipe weights cost this test ten seconds)."""
    code, out, _ = run("models")
    assert code == 0 and "MISSING official" in out
    code, out, _ = run("models", "import", official_archives / "face_checkpoints.zip")  # either archive first:
    assert code == 0 and "imported the official face weights (face_256)" in out  # the other's files are kept
    code, out, _ = run("models", "import", official_archives / "global_checkpoints.zip")
    assert code == 0 and "imported the official global weights" in out
    installed = data_dir / "weights" / "official"
    assert (installed / FACE_FILES["face_256"][1]).is_file()
    assert (installed / GLOBAL_FILES["VAE_A_quality"][1]).is_file()
    code, out, _ = run("models")
    assert "OK      official" in out and "faces: face_256" in out
    code, out, _ = run("restore", small_photo(tmp_path / "p.png"), "-o", tmp_path / "out", "--weights", "official")
    assert code == 0, out
    record = json.loads((tmp_path / "out" / "p.png.heirloom.json").read_text(encoding="utf-8"))
    assert record["faces"]["ran"] and record["faces"]["found"] == 0  # auto: on, and noise has no face


def test_models_import_refuses_a_broken_zip_and_installs_nothing(tmp_path, data_dir):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(GLOBAL_FILES["VAE_A_quality"][1], b"garbage")
    code, _, err = run("models", "import", bad)
    assert code == 1 and "not imported" in err
    assert not (data_dir / "weights" / "official").exists()
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("readme.txt", "hello")
    code, _, err = run("models", "import", bad)
    assert code == 1 and "global_checkpoints.zip or face_checkpoints.zip" in err and len(err.strip().splitlines()) == 1


def test_models_download_from_a_local_server(official_archives, data_dir):
    """Both archives laid out as released, with layout-only weights (kilobytes): downloading and
    importing validate every member as for the real ones; no network sees their values here."""
    with serve_folder(official_archives) as base:
        code, out, err = run("models", "download", "official", "--url", f"{base}/global_checkpoints.zip",
                             "--face-url", f"{base}/face_checkpoints.zip")
        missing_faces = run("models", "download", "faces", "--face-url", f"{base}/nothing.zip")
    assert code == 0, err
    assert "downloaded and imported the official global weights" in out and "download [" in err
    assert "downloaded and imported the official face weights (face_256)" in out
    assert (data_dir / "weights" / "official" / GLOBAL_FILES["mapping_scratch"][1]).is_file()
    assert (data_dir / "weights" / "official" / FACE_FILES["face_256"][1]).is_file()
    code, _, err = missing_faces
    assert code == 1 and "404" in err and "models import" in err


def stand_in_restorer(monkeypatch):
    """The CLI over a restorer whose global stage is the identity and whose face generator is the
    stand-in of test_face_stage (the flags and the records are under test, not the networks)."""
    from test_face_stage import StandInBank, StandInFace

    monkeypatch.setattr(pipeline, "translate", lambda bank, x, *args, **kwargs: SimpleNamespace(generated=x))
    monkeypatch.setattr(batch, "build_restorer", lambda config, device=None: Restorer(StandInBank(StandInFace())))


def test_faces_flags_reach_the_pipeline_and_the_sidecar(tmp_path, monkeypatch, capsys):
    import cv2
    import skimage.data

    stand_in_restorer(monkeypatch)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)).save(photo)
    records = {}
    for flag in ("--faces", "--no-faces", None):
        outdir = tmp_path / f"out{flag}"
        code, out, err = run("restore", photo, "-o", outdir, "--tile", "off", *([flag] if flag else []))
        assert code == 0, out + err
        records[flag] = json.loads((outdir / "astronaut.png.heirloom.json").read_text(encoding="utf-8"))
        assert ("faces refined: 1 of 1" in out) == (flag != "--no-faces")
    for flag in ("--faces", None):  # None: auto, on because the weights have the face generator
        faces = records[flag]["faces"]
        assert faces["ran"] and (faces["found"], faces["refined"], faces["network"]) == (1, 1, "face_256")
        assert faces["detector"]["name"].startswith("MTCNN") and faces["detector"]["weights"]["sha256"]
        assert len(faces["faces"]) == 1 and faces["faces"][0]["refined"]
    assert records["--faces"]["options"]["restore"]["faces"] is True
    assert records[None]["options"]["restore"]["faces"] is None
    assert records["--no-faces"]["faces"] == {"ran": False, "reason": "off (--no-faces)"}
    assert records["--no-faces"]["options"]["restore"]["faces"] is False
    code, _, _ = run("restore", photo, "-o", tmp_path / "x", "--faces", "--no-faces")
    assert code == 2 and "not allowed with" in capsys.readouterr().err


def test_faces_without_face_weights_restores_and_says_why(tmp_path, official_zip):
    code, out, err = run("restore", small_photo(tmp_path / "p.png"), "-o", tmp_path / "out", "--weights",
                         official_zip, "--faces")
    assert code == 0, out + err
    assert "faces were not refined" in err and "face_checkpoints.zip" in err and "models download official" in err
    assert (tmp_path / "out" / "p.png").exists()
    record = json.loads((tmp_path / "out" / "p.png.heirloom.json").read_text(encoding="utf-8"))
    assert record["faces"]["ran"] is False and "face_checkpoints.zip" in record["faces"]["reason"]
