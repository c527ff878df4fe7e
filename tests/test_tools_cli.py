"""The thin CLIs tools/stylegan2_generate.py, stylegan2_project.py, stylegan2_edit.py,
align_faces.py: --help explains, runs write their files, bad input gives a clear error (run
in-process: the generator programs compiled by test_generate/test_editing are reused); the
faces tools/ada_experiment.py renders for a host without tensorflow."""

from pathlib import Path

import numpy as np
import pytest
from conftest import load_tool
from PIL import Image

from stylejax import stylegan2_projection

ROOT = Path(__file__).resolve().parents[1]
LANDMARKS = ROOT / "tests" / "data" / "align" / "astronaut_landmarks.txt"


@pytest.fixture(scope="module")
def tools():
    return {
        n: load_tool(n)
        for n in ("stylegan2_generate", "stylegan2_project", "stylegan2_edit", "align_faces")
    }


@pytest.mark.parametrize(
    "name, argv, phrases",
    [
        ("stylegan2_generate", ["--help"], ["images", "mix", "interp", "truncation"]),
        (
            "stylegan2_generate",
            ["mix", "--help"],
            ["--layers", "W+ entries taken from the columns"],
        ),
        ("stylegan2_project", ["--help"], ["LPIPS", "latents.npy", "progress.png", "--space"]),
        ("stylegan2_edit", ["--help"], ["--sefa", "--pca", "--fit", "--direction", "--strengths"]),
        ("align_faces", ["--help"], ["FFHQ", "--landmarks", "stylejax[align]"]),
    ],
)
def test_help_explains(tools, capsys, name, argv, phrases):
    with pytest.raises(SystemExit) as e:
        tools[name].main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    for phrase in phrases:
        assert phrase in out, f"{name} {argv}: '{phrase}' missing from the help"


def _error(tool, argv):
    with pytest.raises(SystemExit) as e:
        tool.main(argv)
    return str(e.value.code)


def test_generate_writes_images_and_grids(tools, tmp_path):
    gen = tools["stylegan2_generate"]
    gen.main(["images", "--seeds", "0-3", "--outdir", str(tmp_path / "g"), "--grid",
              str(tmp_path / "grid.png")])  # fmt: skip
    files = sorted(p.name for p in (tmp_path / "g").iterdir())
    assert files == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png"]
    assert Image.open(tmp_path / "grid.png").size == (2 * 64 + 1, 2 * 64 + 1)
    assert "not a converted stylejax checkpoint" in _error(
        gen, ["images", "--seeds", "0", "--grid", "x.png", "--network", str(tmp_path)]
    )
    assert "pass exactly one of --seeds and --latents" in _error(gen, ["images", "--grid", "x"])
    assert "expected integers and ranges" in _error(gen, ["mix", "--rows", "a", "--cols", "1",
                                                          "--out", "x.png"])  # fmt: skip


def test_edit_writes_a_sweep(tools, tmp_path):
    edit = tools["stylegan2_edit"]
    edit.main(["--seeds", "0-1", "--sefa", "0", "--strengths=-2,2", "--out",
               str(tmp_path / "e.png"), "--save-direction", str(tmp_path / "d.npy")])  # fmt: skip
    assert Image.open(tmp_path / "e.png").size == (2 * 64 + 1, 2 * 64 + 1)
    d = np.load(tmp_path / "d.npy")
    assert d.shape == (128,) and abs(np.linalg.norm(d) - 1) < 1e-5  # the default G: w 128
    assert "exactly one of --direction, --sefa, --pca and --fit" in _error(
        edit, ["--seeds", "0", "--out", "x.png"]
    )
    assert "direction file" in _error(
        edit, ["--seeds", "0", "--direction", str(tmp_path / "no.npy"), "--out", "x.png"]
    )
    assert "--strengths must be START:STOP:COUNT" in _error(
        edit, ["--seeds", "0", "--sefa", "0", "--strengths", "a:b", "--out", "x.png"]
    )


def test_project_writes_its_outputs(tools, tmp_path, monkeypatch):
    """The tool's file handling around stylegan2_projection.project (the optimisation itself is
    tested in test_projection.py), with a stand-in result."""
    target = np.full((80, 100, 3), 128, np.uint8)
    Image.fromarray(target).save(tmp_path / "face.png")

    def fake_project(G, variables, targets, config, lpips, seed, progress=None):
        assert targets.shape == (1, 64, 64, 3) and abs(targets.mean()) < 0.01  # cropped, scaled
        n, steps = len(targets), config.num_steps
        progress(steps - 1, np.zeros(n))
        return stylegan2_projection.ProjectionResult(
            ws=np.zeros((n, G.num_ws, G.w_dim)),
            noise={"b4/conv1": np.zeros((n, 4, 4))},
            images=np.asarray(targets),
            snapshots=np.zeros((config.num_snapshots,) + targets.shape),
            snapshot_steps=np.arange(1, config.num_snapshots + 1),
            distances=np.ones((steps, n)),
            distance="mse",
        )

    monkeypatch.setattr(stylegan2_projection, "project", fake_project)
    out = tmp_path / "proj"
    tools["stylegan2_project"].main(
        [str(tmp_path / "face.png"), "--outdir", str(out), "--steps", "3"]
    )
    assert np.load(out / "latents.npy").shape == (1, 10, 128)  # the default G: w 128
    assert "b4/conv1" in np.load(out / "noise.npz").files
    assert Image.open(out / "progress.png").size == (5 * 64 + 4, 64)  # target, 3 snaps, result
    assert len((out / "distances.txt").read_text().splitlines()) == 4
    (tmp_path / "notes.png").write_text("not an image")
    assert "notes.png: cannot read as an image" in _error(
        tools["stylegan2_project"], [str(tmp_path / "notes.png"), "--outdir", str(out)]
    )
    assert "does not exist" in _error(
        tools["stylegan2_project"], ["nope.png", "--outdir", str(out)]
    )


def test_align_faces_from_a_landmark_file(tools, tmp_path):
    photo = np.random.default_rng(0).integers(0, 255, (512, 512, 3), np.uint8)
    Image.fromarray(photo).save(tmp_path / "astronaut.png")
    tools["align_faces"].main([str(tmp_path / "astronaut.png"), "--landmarks", str(LANDMARKS),
                               "--outdir", str(tmp_path / "al"), "--size", "32"])  # fmt: skip
    assert Image.open(tmp_path / "al" / "astronaut_aligned.png").size == (32, 32)
    assert "pass exactly one image" in _error(
        tools["align_faces"],
        ["a.png", "b.png", "--landmarks", str(LANDMARKS), "--outdir", str(tmp_path)],
    )
    (tmp_path / "lm.txt").write_text("1 2\n")
    assert "expected 68 (x, y) landmarks" in _error(
        tools["align_faces"],
        [str(tmp_path / "astronaut.png"), "--landmarks", str(tmp_path / "lm.txt"), "--outdir", "x"],
    )


def test_ada_experiment_rejects_a_resolution_the_build_lacks(capsys):
    """Sizes other than the TFDS build's exist only as --rendered faces."""
    with pytest.raises(SystemExit) as e:
        load_tool("ada_experiment").main(["--resolution", "16", "--out", "unused"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--resolution 16: the synthetic_faces build has 32, 64, 128, 256 px" in err
    assert "add --rendered" in err


def test_ada_experiment_renders_the_builds_faces():
    """--rendered (the accelerator host has no tensorflow) trains on the synthetic faces'
    pixels exactly as the TFDS build stores them (lossless PNG), scaled to [-1, 1]."""
    import io

    from stylejax.data.synthetic_faces import make_example

    faces = load_tool("ada_experiment").rendered_faces("train", 3, 32)
    assert faces.shape == (3, 32, 32, 3) and faces.dtype == np.float32
    for i, face in enumerate(faces):
        png = make_example(0, "train", 32, i)[1]["image"]
        stored = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32)
        np.testing.assert_array_equal(face, stored / 127.5 - 1.0)


def test_ada_experiment_rendered_run_records_its_settings_and_scores(tmp_path):
    """A tiny --rendered run below 16 px (the pixel FD then takes every pixel): OUT.json holds
    the settings the flags chose and, at each --fd-every step, the pixel FD and D's E[sign]
    on training and test faces under the D after the step and the D it started from."""
    import json

    out = tmp_path / "ada8"
    flags = "--rendered --resolution 8 --channel-base 16 --channel-max 8 --images 8"
    flags += " --test-images 8 --steps 2 --log-every 1 --fd-every 2 --lr 0.001 --pl-weight 0"
    flags += " --seed 3"
    load_tool("ada_experiment").main([*flags.split(), "--only", "noaug", "--out", str(out)])
    run = json.loads(out.with_suffix(".json").read_text())["noaug"]
    config = run["config"]
    settings = (config["resolution"], config["lr"], config["pl_weight"], config["seed"])
    assert settings == (8, 0.001, 0.0, 3)
    assert config["rendered"] and config["augment"] == "off"
    assert [c["step"] for c in run["curves"]] == [1, 2]
    scored = run["curves"][1]
    for key in ("d_sign_train", "d_sign_test", "d_sign_train_step_before"):
        assert -1.0 <= scored[key] <= 1.0
    assert "pixel_fd" not in run["curves"][0] and np.isfinite(scored["pixel_fd"])
    assert run["scores"]["pixel_fd_floor"] > 0


def test_d_sign_swing_rejects_a_folder_that_is_not_the_official_code(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        load_tool("d_sign_swing").main(["--ada", str(tmp_path)])
    assert e.value.code == 2
    assert "no training/networks.py (not a stylegan2-ada-pytorch" in capsys.readouterr().err
