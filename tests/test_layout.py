"""The package map of WORKSPACE.md: which part of keras_instance may import which.

Every import (module level, inside functions, but not under `if TYPE_CHECKING:`) is read from
the source; one against the map fails with the file, line and import.
"""
import ast
import os
import subprocess
import sys

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "keras_instance")
LOWER = ["config", "text", "data", "model", "run_folder", "retrieval", "training", "export",
         "reports", "embedding"]
MAY_IMPORT = {
    "cli": set(LOWER) | {"cli"},
    "reports": {"retrieval", "run_folder", "model", "data", "text", "config"},
    "export": {"retrieval", "run_folder", "model", "data", "text", "config"},
    "embedding": {"export", "retrieval", "run_folder", "model", "data", "text", "config"},
    "training": {"run_folder", "model", "data", "text", "config"},
    "retrieval": {"run_folder", "model", "data", "text", "config"},
    "run_folder": {"model", "text", "config"},
    "model": set(),
    "data": {"text"},
    "text": set(),
    "config": set(),
}


def _part(path: str) -> str:
    rel = os.path.relpath(path, PACKAGE).replace(os.sep, "/")
    return rel.split("/")[0].removesuffix(".py")


def _imports(tree):
    """(line, imported keras_instance part) of every import outside TYPE_CHECKING blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            skip |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "keras_instance" else [
                f"keras_instance.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "keras_instance" and len(parts) > 1:
                yield node.lineno, parts[1]


def test_no_module_imports_against_the_package_map():
    wrong = []
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            path = os.path.join(root, name)
            part = _part(path)
            if not name.endswith(".py") or part in ("__init__", "_startup"):
                continue
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for line, imported in _imports(tree):
                if imported != part and imported not in MAY_IMPORT[part] | {"_startup"}:
                    wrong.append(f"{os.path.relpath(path, ROOT)}:{line}: {part} imports "
                                 f"{imported}")
    assert not wrong, "imports against WORKSPACE.md's package map:\n" + "\n".join(wrong)


def test_loading_a_trained_run_imports_no_training_code():
    script = ("import sys; import keras_instance.cli.flags, keras_instance.run_folder, "
              "keras_instance.retrieval.results, keras_instance.export.publish, "
              "keras_instance.reports.html; "
              "bad = [m for m in sys.modules if m.startswith(('keras_instance.training', "
              "'gensim'))]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
