"""Project-level promises: the README support table, packaging of spikec.passes / spikec.targets."""

import re
import subprocess
import sys
import zipfile

from conftest import ROOT, readme_table


def support_rows():
    return readme_table("support-table")


def test_support_table_matches_reality(zoo_models):
    from conftest import INTREF_FAMILIES, LAVA_FAMILIES, NIR_FAMILIES, ONNX_FAMILIES

    from examples.models import zoo
    from spikec.targets import names

    TARGETS = names()

    verified = {"intref": set(INTREF_FAMILIES), "lava": set(LAVA_FAMILIES), "nir": set(NIR_FAMILIES),
                "onnx": set(ONNX_FAMILIES)}
    header, rows = support_rows()
    assert header[:3] == ["family", "example", "float IR"]
    assert set(header[3:]) == set(TARGETS)
    families = [r["family"].strip("`") for r in rows]
    assert sorted(families) == sorted(zoo.FAMILIES), "every example family is in the table and vice versa"
    for r in rows:
        fam = r["family"].strip("`")
        assert r["float IR"] == "yes" and fam in zoo_models  # checked by test_interpreter
        for t in TARGETS:
            assert r[t] in ("yes", "no")
            assert (r[t] == "yes") == (fam in verified[t]), f"README claims {t}={r[t]} for {fam}"


def test_readme_has_exactly_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set-up")[1].split("##")[0]
    cmds = re.findall(r"^make (\w+)", setup, re.M)
    assert cmds == ["demo", "test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_wheel_ships_passes_and_targets(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("spikec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for mod in ("spikec/passes/__init__.py", "spikec/targets/__init__.py", "spikec/ir/graph.py",
                "spikec/frontend/trace.py"):
        assert mod in names, mod
    assert not any(n.startswith(("passes/", "targets/", "tests/", "examples/")) for n in names)


def test_wheel_installs_and_imports(tmp_path):
    """Install the wheel into a fresh venv that sees this environment's torch, and import it."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "w"), str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "w").glob("spikec-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True)
    code = "import spikec.passes, spikec.targets, spikec.ir, spikec.cli; print(spikec.passes.__file__)"
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert str(venv) in r.stdout, "imported from the installed wheel, not the source tree"


def test_editable_install_maps_passes_and_targets():
    import spikec.passes
    import spikec.targets

    assert spikec.passes.__file__ == str(ROOT / "passes" / "__init__.py")
    assert spikec.targets.__file__ == str(ROOT / "targets" / "__init__.py")


def test_example_script_compiles_a_family_for_every_target(tmp_path, capsys):
    """examples/compile_family.py drives the CLI: compile, run and verify per target."""
    from examples.compile_family import main

    assert main(["neuron_variants", "--targets", "intref,nir,onnx", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for target, suffix in [("intref", ".intref"), ("nir", ".nir"), ("onnx", ".onnx")]:
        assert (tmp_path / f"neuron_variants{suffix}").exists()
        assert f"--target {target}" in out
    assert "spikes identical in every layer: yes" in out and "onnxruntime outputs == intref outputs" in out
