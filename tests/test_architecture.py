"""The shell around the core: no import circle under spikec/, and the CLI, the compile driver, the
API and verify name no target (every backend is reached through the Target interface)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "spikec"
TARGET_NAMES = {"intref", "lava", "nir", "onnx"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """spikec modules (under spikec/) that ``path`` imports anywhere (module level or in a function)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for n in names:
            while n and n not in modules:
                n = n.rpartition(".")[0]
            if n and n != me and not me.startswith(n + "."):  # a package's own parents are not a circle
                out.add(n)
    return out


def test_no_import_circle_under_spikec():
    files = [p for p in PKG.rglob("*.py")]
    modules = {_module_name(p) for p in files}
    graph = {_module_name(p): _imports(p, modules) for p in files}
    # depth-first search for a cycle; report it as a path
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of ``path`` that are not docstrings, and imported module names."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            out.append((n.lineno, n.value))
        elif isinstance(n, ast.ImportFrom) and n.module:
            out.append((n.lineno, n.module))
        elif isinstance(n, ast.Import):
            out += [(n.lineno, a.name) for a in n.names]
    return out


def test_cli_compile_driver_api_and_verify_name_no_target():
    files = [*sorted((PKG / "cli").glob("*.py")), PKG / "compiler.py", PKG / "api.py",
             *sorted((PKG / "verification").glob("*.py"))]
    found = []
    for path in files:
        for line, text in _code_strings(path):
            words = set(text.replace(".", " ").replace("'", " ").replace('"', " ").split())
            if words & TARGET_NAMES:
                found.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert not found, "target names outside targets/:\n" + "\n".join(found)


def test_the_old_shell_is_gone():
    """verify.py and verification.py are one package; the CLI is a package of verbs."""
    assert not (PKG / "verify.py").exists() and not (PKG / "cli.py").exists()
    assert {p.stem for p in (PKG / "verification").glob("*.py")} >= {"compare", "report"}
    assert {p.stem for p in (PKG / "cli").glob("*.py")} >= {"show", "compile", "run", "verify"}
