"""CLI: help everywhere, show, compile option handling and error paths (one line, exit 2)."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from spikec.cli import main

DIGITS = f"{ROOT}/examples/models/spikformer.py:spikformer_digits"


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory, zoo_models):
    p = tmp_path_factory.mktemp("ckpt") / "digits.pth"
    torch.save({"model": zoo_models["spikformer_digits"][0].state_dict()}, p)
    return p


@pytest.mark.parametrize("argv", [["--help"], ["show", "--help"], ["compile", "--help"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: spikec" in capsys.readouterr().out


def test_show_prints_table_with_sources(digits_ckpt, capsys):
    assert main(["show", str(digits_ckpt), "--model", DIGITS, "--input-shape", "1,8,8"]) == 0
    out = capsys.readouterr().out
    for col in ("node", "op", "source module", "shape", "kind", "parameters"):
        assert col in out
    assert "block.0.attn.attn_lif" in out and "LIF tau=2 th=0.5" in out


def test_compile_emits_ir_and_a_refusing_target_writes_nothing(tmp_path, digits_ckpt, capsys):
    """A target that refuses the model (here a registered toy target) fails with one line; the
    traced IR asked for with --emit-ir is still written, the artifact is not."""
    from spikec import ir
    from spikec.errors import UnsupportedError
    from spikec.targets import Target, register_target, unregister

    class Refusing(Target):
        name = "refusing"
        description = "a backend that supports nothing yet"

        def emit(self, compiled, **options):
            raise UnsupportedError("target 'refusing' is not implemented for neuron layers yet")

    register_target(Refusing)
    try:
        code = main(["compile", str(digits_ckpt), "--model", DIGITS, "--input-shape", "1,8,8",
                     "--target", "refusing", "-o", str(tmp_path / "out"), "--emit-ir", str(tmp_path / "ir")])
    finally:
        unregister("refusing")
    err = capsys.readouterr().err
    assert code == 2
    assert "target 'refusing'" in err and "not implemented" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists(), "no half-written artifact"
    g = ir.load(tmp_path / "ir")
    assert any(n.op == "neuron" for n in g.nodes)
    # a saved IR directory can be shown again
    assert main(["show", str(tmp_path / "ir"), "--text"]) == 0
    assert "%block.0.attn.attn_lif" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", DIGITS], "--input-shape is required"),
        ([], "--model package.module:factory"),
        (["--model", DIGITS, "--input-shape", "3,8,8"], "does not accept input of shape [B, 3, 8, 8]"),
        (["--model", DIGITS, "--input-shape", "1,8,8", "--model-kwargs", "{bad"], "--model-kwargs is not valid JSON"),
    ],
)
def test_error_paths_one_line_exit_2(digits_ckpt, capsys, extra, message):
    code = main(["show", str(digits_ckpt), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_missing_and_corrupt_files_exit_2(tmp_path, capsys):
    assert main(["show", str(tmp_path / "missing.pt")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["show", str(bad), "--model", DIGITS, "--input-shape", "1,8,8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "corrupt.pt" in err and err.count("\n") == 1


def test_debug_shows_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "spikec.cli", "--debug", "show", str(tmp_path / "missing.pt")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "Traceback" in r.stderr and "CheckpointError" in r.stderr


def test_console_script_installed():
    import shutil

    exe = shutil.which("spikec", path=str(ROOT / ".venv" / "bin")) or shutil.which("spikec")
    assert exe, "the spikec console script is installed"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("spikec ")


def test_model_package_resolves_from_the_working_directory(digits_ckpt, tmp_path):
    """`--model pkg.module:factory` imports from the working directory, as `python -m` does, also
    in the console script (whose sys.path does not hold the working directory)."""
    import shutil

    exe = shutil.which("spikec", path=str(ROOT / ".venv" / "bin")) or shutil.which("spikec")
    args = ["show", str(digits_ckpt), "--model", "examples.models.zoo:spikformer_digits", "--input-shape", "1,8,8"]
    for cmd in ([exe], [sys.executable, "-m", "spikec"]):
        r = subprocess.run(cmd + args, capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0 and "block.0.attn" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([exe] + args, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "cannot import 'examples.models.zoo'" in r.stderr


def test_list_passes(capsys):
    assert main(["compile", "--list-passes"]) == 0
    out = capsys.readouterr().out
    assert "fold_batchnorm" in out and "lava " in out and "->" in out


def test_compile_prints_pass_summary_and_dump(tmp_path, digits_ckpt, capsys):
    code = main(["compile", str(digits_ckpt), "--model", DIGITS, "--input-shape", "1,8,8", "--target", "lava",
                 "-o", str(tmp_path / "o"), "--dump-ir-after", "fold_batchnorm", "-v"])
    out = capsys.readouterr().out
    assert "--- IR after fold_batchnorm ---" in out
    assert "nodes: 60 -> " in out and "fold_batchnorm: fired 11x" in out
    assert "+ block.0.attn:scale (block.0.attn): x0.125 merged into the threshold" in out
    assert "quantization (Loihi 2 fixed point)" in out and "Loihi 2 resources" in out
    assert code == 0 and (tmp_path / "o" / "manifest.json").exists()


def test_compile_rejects_unknown_pass_before_tracing(digits_ckpt, capsys):
    assert main(["compile", str(digits_ckpt), "--target", "nir", "-o", "x", "--skip", "no_such_pass"]) == 2
    assert "unknown pass(es) no_such_pass" in capsys.readouterr().err
    assert main(["compile", "--target", "nir"]) == 2
    assert "compile needs CHECKPOINT, -o/--output" in capsys.readouterr().err


def test_outputs_never_replace_what_spikec_did_not_write(tmp_path, digits_ckpt, capsys, monkeypatch):
    """-o over a directory that is not a spikec artifact (or the working directory, or the
    checkpoint) is refused before any work; an earlier artifact is replaced; permissions are the
    usual ones, not tempfile's owner-only."""
    import os

    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    args = ["compile", str(digits_ckpt), "--model", DIGITS, "--input-shape", "1,8,8"]
    for out, target in [(keep, "intref"), (keep / "notes.txt", "intref"), (keep, "onnx")]:
        assert main([*args, "--target", target, "-o", str(out)]) == 2
    monkeypatch.chdir(keep)
    assert main([*args, "--target", "intref", "-o", "."]) == 2
    assert main([*args, "--target", "onnx", "-o", str(digits_ckpt)]) == 2
    err = capsys.readouterr().err
    assert "not a spikec artifact" in err and "is a directory" in err and "one of the command's inputs" in err
    assert (keep / "notes.txt").read_text() == "precious" and digits_ckpt.exists()
    art = tmp_path / "a.intref"
    for _ in range(2):  # the second compile replaces the first artifact
        assert main([*args, "--target", "intref", "-o", str(art)]) == 0
    assert main([*args, "--target", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert (art.stat().st_mode & 0o777) == 0o777 & ~mask
    assert ((tmp_path / "m.onnx").stat().st_mode & 0o777) == 0o666 & ~mask
    (tmp_path / "file").write_text("x")
    assert main([*args, "--target", "onnx", "-o", str(tmp_path / "file" / "m.onnx")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_bad_data_is_refused_in_one_line(tmp_path, digits_ckpt, capsys):
    """Inputs that do not fit, empty / non-numeric / NaN arrays, labels of the wrong length, and
    bad option values: one-line errors (exit 2), before anything runs."""
    import numpy as np

    model = ["--model", DIGITS, "--input-shape", "1,8,8"]
    arrays = {"wrong.npy": np.zeros((4, 3, 8, 8), np.float32), "empty.npy": np.zeros((0, 1, 8, 8), np.float32),
              "text.npy": np.array(["a", "b"]), "nan.npy": np.full((4, 1, 8, 8), np.nan, np.float32),
              "x.npy": np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32),
              "labels5.npy": np.zeros(5, np.int64)}
    for name, a in arrays.items():
        np.save(tmp_path / name, a)
    verify = ["verify", str(digits_ckpt), *model, "--input"]
    cases = [([*verify, str(tmp_path / "wrong.npy")], "the model takes ['B', 1, 8, 8]"),
             ([*verify, str(tmp_path / "empty.npy")], "is empty"),
             ([*verify, str(tmp_path / "text.npy")], "expected numbers"),
             ([*verify, str(tmp_path / "nan.npy")], "256 NaN values"),
             ([*verify, str(tmp_path / "x.npy"), "--labels", str(tmp_path / "labels5.npy")], "one label per sample: [4]"),
             (["compile", str(digits_ckpt), *model, "--target", "intref", "-o", str(tmp_path / "o"),
               "--calib", str(tmp_path / "nan.npy")], "NaN values")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, message
    for bad in (["--time-steps", "0"], ["--input-range", "0,inf"]):
        with pytest.raises(SystemExit) as e:
            main(["compile", str(digits_ckpt), *model, "--target", "intref", "-o", str(tmp_path / "o"), *bad])
        assert e.value.code == 2
    assert not (tmp_path / "o").exists()


def test_per_step_outputs_are_averaged_for_top1(tmp_path, zoo_models, capsys):
    """spikingjelly's Spikformer returns [T, B, classes]: top-1 and accuracy average over time."""
    import json

    import numpy as np

    model, x, _ = zoo_models["sj_spikformer"]
    torch.save(model.state_dict(), tmp_path / "m.pth")
    np.save(tmp_path / "x.npy", x[:8].numpy())
    np.save(tmp_path / "y.npy", np.arange(8) % 10)
    assert main(["verify", str(tmp_path / "m.pth"), "--model", "examples.models.zoo:sj_spikformer", "--input-shape",
                 "3,16,16", "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--input-range", "0,2", "--json", str(tmp_path / "new" / "r.json")]) == 0
    rep = json.loads((tmp_path / "new" / "r.json").read_text())
    with torch.no_grad():
        from examples.models.zoo import _reset

        _reset(model)
        pred = model(x[:8]).mean(0).argmax(-1).numpy()
    assert rep["accuracy"]["torch"] == float((pred == np.arange(8) % 10).mean())


def test_inputs_beyond_the_compiled_range_are_reported(tmp_path, digits_ckpt, capsys):
    """0..255 images for a model compiled for 0..1 inputs: clipped, and said so."""
    import numpy as np

    art = tmp_path / "m.intref"
    assert main(["compile", str(digits_ckpt), "--model", DIGITS, "--input-shape", "1,8,8", "--target", "intref",
                 "-o", str(art)]) == 0
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    for name, data in (("ok.npy", x), ("bytes.npy", x * 255)):
        np.save(tmp_path / name, data)
        assert main(["run", str(art), "--input", str(tmp_path / name)]) == 0
    err = capsys.readouterr().err
    assert err.count("outside the compiled input range [0, 1]") == 1


def test_outputs_never_overwrite_inputs_or_foreign_files(tmp_path, digits_ckpt, capsys):
    """A directory that merely holds a graph.json next to other files, a directory holding the
    checkpoint, the --model file, --save over the input (also without its .npy suffix) and
    --json over the checkpoint: all refused, nothing touched."""
    import shutil

    import numpy as np

    model_file = tmp_path / "model.py"
    shutil.copy(ROOT / "examples" / "models" / "spikformer.py", model_file)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "graph.json").write_text("{}")
    (proj / "thesis.tex").write_text("precious")
    art = tmp_path / "art"
    ckpt = art / "my.pth"
    args = ["--model", f"{model_file}:spikformer_digits", "--input-shape", "1,8,8"]
    assert main(["compile", str(digits_ckpt), *args, "--target", "intref", "-o", str(art)]) == 0
    shutil.copy(digits_ckpt, ckpt)
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32))
    refused = [["compile", str(digits_ckpt), *args, "--target", "intref", "-o", str(proj)],
               ["compile", str(ckpt), *args, "--target", "intref", "-o", str(art)],
               ["compile", str(digits_ckpt), *args, "--target", "onnx", "-o", str(model_file)],
               ["run", str(tmp_path / "none"), "--input", str(x), "--save", str(x)],
               ["run", str(tmp_path / "none"), "--input", str(x), "--save", str(tmp_path / "x")],
               ["verify", str(digits_ckpt), *args, "--input", str(x), "--json", str(digits_ckpt)]]
    for argv in refused:
        assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "(it holds thesis.tex)" in err and "(it holds my.pth)" in err and err.count("command's inputs") >= 4
    assert (proj / "thesis.tex").read_text() == "precious" and ckpt.exists() and "def " in model_file.read_text()


def test_limit_takes_samples_not_time_steps_of_a_sequence_model(tmp_path, capsys):
    """--limit N keeps the first N samples: the second axis of [T, B, ...] inputs (it once cut time)."""
    from examples.models import zoo
    from spikec.cli import main

    model, x = zoo.build("neuron_variants", batch=8)
    torch.save(model.state_dict(), tmp_path / "nv.pth")
    np.save(tmp_path / "x.npy", x.numpy())
    code = main(["verify", str(tmp_path / "nv.pth"), "--model", "examples.models.zoo:neuron_variants", "--input-shape",
                 "2,8,8", "--time-steps", "4", "--input", str(tmp_path / "x.npy"), "--limit", "3", "--target", "intref"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "on 3 samples" in out


@pytest.mark.parametrize("target,artifact", [("intref", "a"), ("onnx", "a.onnx")])
def test_run_prints_top1_averaged_over_time_for_per_step_outputs(tmp_path, capsys, target, artifact):
    """spikec run on an artifact with per-step outputs [T, B, C]: top-1 of the time average (step 0
    alone says little on data that only the order of the steps tells apart); an ONNX file says its
    output layouts in its metadata."""
    from examples.train import EXAMPLES, ROOT
    from spikec.data import load_dataset

    ex = EXAMPLES["stformer_events"]
    x, y = load_dataset("events")
    np.save(tmp_path / "x.npy", x[:, :20])
    assert main(["compile", str(ROOT / ex.checkpoint("stformer_events")), "--model", f"examples.models.zoo:{ex.factory}",
                 "--model-kwargs", '{"T":8,"img":16,"in_channels":2,"embed_dims":32,"num_heads":2,"depths":1}',
                 "--input-shape", "2,16,16", "--time-steps", "8", "--target", target, "-o", str(tmp_path / artifact)]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / artifact), "--input", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("top-1 (first 20), outputs averaged over time:"))
    assert line.split(":", 1)[1].strip() == str(y[:20].tolist())  # the example is 100 % on these
