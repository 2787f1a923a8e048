"""The documentation names only what exists: every `python -m …` module, every script and
repository path, and every relative link in README, WORKSPACE, CHANGELOG, docs/ and the
folders' READMEs (issue 22: the docs had drifted to a `cli_flags.py` and a
`python -m keras_instance.export` that no longer existed)."""
import glob
import itertools
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted({os.path.relpath(p, ROOT) for p in
               ["README.md", "WORKSPACE.md", "CHANGELOG.md", "serving/README.md",
                "exports/README.md", *glob.glob(os.path.join(ROOT, "docs", "*.md"))]})
# Written by the programs, never in git: a path starting with one of these is an example.
GENERATED = ("runs/", "data/", "exports/", "emb/", ".venv/", "runs", "data", "exports")


def _text(doc: str) -> str:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        return f.read()


def _tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def _tracked_top_level() -> set[str]:
    return {n.split("/")[0] for n in _tracked()} | {"docs", "CHANGELOG.md", "LICENSE"}


def bare_files_named(text: str) -> set[str]:
    """Backticked bare file names of our kinds (`cli_flags.py`, `demo.flags`)."""
    return {t for t in re.findall(r"`([\w.-]+\.(?:py|flags))`", text)}


def module_file(module: str) -> str | None:
    """The repository file that `python -m module` runs, or None."""
    base = os.path.join(ROOT, *module.split("."))
    for candidate in (base + ".py", os.path.join(base, "__main__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def modules_named(text: str) -> set[str]:
    names = re.findall(r"python(?:3(?:\.11)?)? -m ((?:keras_instance|serving)[\w.<]*)", text)
    return {n.rstrip(".") for n in names if "<" not in n}  # `cli.<program>`: a pattern


def _expand_braces(token: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", token)
    if not match:
        return [token]
    head, tail = token[:match.start()], token[match.end():]
    return list(itertools.chain.from_iterable(
        _expand_braces(head + part + tail) for part in match.group(1).split(",")))


def paths_named(text: str, top_level: set[str]) -> set[str]:
    """Backticked tokens that name a file or folder of the repository (first component tracked,
    or a package-relative path such as `model/dual_path.py`)."""
    found = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.split("::")[0].rstrip(".,:;)")
        if any(c in token for c in "<>*$=|") or token.startswith(("-", "http", "../")):
            continue
        if "/" not in token and not re.search(r"\.(py|md|flags|toml|json)$", token):
            continue
        for path in _expand_braces(token):
            first = path.split("/")[0]
            if path.startswith(GENERATED) or first not in top_level | {
                    "cli", "data", "model", "training", "retrieval", "export", "embedding",
                    "reports", "text", "standin", "web"}:
                continue
            found.add(path)
    return found


def path_exists(path: str) -> bool:
    for base in (ROOT, os.path.join(ROOT, "keras_instance"), os.path.join(ROOT, "serving")):
        if os.path.exists(os.path.join(base, path)):
            return True
    return False


@pytest.mark.parametrize("doc", DOCS)
def test_every_python_m_command_names_a_program_that_exists(doc):
    missing = sorted(m for m in modules_named(_text(doc)) if module_file(m) is None)
    assert not missing, f"{doc} names `python -m` modules that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_repository_path_named_exists(doc):
    missing = sorted(p for p in paths_named(_text(doc), _tracked_top_level())
                     if not path_exists(p))
    assert not missing, f"{doc} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_name_named_is_a_file_of_the_repository(doc):
    names = {os.path.basename(p) for p in _tracked()} | {"test_docs.py"}
    missing = sorted(bare_files_named(_text(doc)) - names)
    assert not missing, f"{doc} names files that are nowhere in the repository: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_resolves(doc):
    folder = os.path.dirname(os.path.join(ROOT, doc))
    links = re.findall(r"\]\(([^)\s]+)\)", _text(doc))
    missing = sorted(link for link in links if not link.startswith(("http", "#", "mailto:"))
                     and not os.path.exists(os.path.join(folder, link.split("#")[0])))
    assert not missing, f"{doc} links to files that do not exist: {missing}"


def test_the_checks_see_a_wrong_name():
    """The checks themselves: names that drifted before are caught."""
    top = _tracked_top_level()
    assert module_file("keras_instance.export") is None          # the old program name
    assert module_file("keras_instance.cli.export") is not None
    assert modules_named("python -m keras_instance.cli.train --x; python -m serving.client; "
                         "python -m keras_instance.cli.<program>") == {
        "keras_instance.cli.train", "serving.client"}
    named = paths_named("`cli_flags.py` and `keras_instance/cli_flags.py`, "
                        "`configs/{demo,nope}.flags`, `runs/demo/x.json`", top)
    assert {p for p in named if not path_exists(p)} == {
        "keras_instance/cli_flags.py", "configs/nope.flags"}
    assert bare_files_named("flags in `cli_flags.py`; `setup.py`") == {"cli_flags.py", "setup.py"}


def test_no_file_points_at_a_method_description_outside_the_repository():
    """docs/method.md is the method's home: a user who clones the repository has no
    ../shared/METHOD.md."""
    out = subprocess.run(["git", "grep", "-l", "METHOD.md", "--", ".", ":!tests/test_docs.py"],
                         cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not out, f"these files point at METHOD.md, which clones lack: {out}"
