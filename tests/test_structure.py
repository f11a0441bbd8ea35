"""The layout's rules, checked: each third-party dependency has one home, torch stays on the
training side, and the run time (index, query, dedupe, eval, check, export) works without it.

The import rules read every module under simsearch/ with `ast`, module level and inside
functions alike (a lazy import is still an import), so they hold for code paths no test runs.
"""
from __future__ import annotations

import ast
import configparser
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "simsearch"

# The training side: the torch network, its ONNX export and the trainer (the `train` extra).
TORCH_SIDE = ("simsearch.model", "simsearch.export", "simsearch.train")
# What the `train` extra adds; the light install has none of it.
TRAIN_EXTRA = ("torch", "torchvision", "onnx", "safetensors")

# imported          -> the only modules that may import it (a package covers its modules;
#                      "module:function" allows it inside that function only)
RULES = {
    "torch":            TORCH_SIDE,
    "torchvision":      TORCH_SIDE,
    "safetensors":      TORCH_SIDE,                   # the torch weights file
    "onnx":             TORCH_SIDE,                   # writing ONNX; the run time reads it via ONNX Runtime
    "simsearch.model":  TORCH_SIDE,
    "simsearch.export": TORCH_SIDE + ("simsearch.cli:convert_cmd",),  # the train extra's command
    "simsearch.train":  TORCH_SIDE + ("simsearch.cli:train_cmd",),
    "onnxruntime":      ("simsearch.embedder", "simsearch.models",
                         "simsearch.export"),          # export checks its file against torch
    "faiss":            ("simsearch.vectors",),
    "sqlite3":          ("simsearch.catalog",),
    "click":            ("simsearch.cli",),
    "ray":              ("simsearch.cluster",),
    "cv2":              ("simsearch.verify",),        # OpenCV: the picture check's SIFT and RANSAC
    "simsearch.cli":    (),                           # the CLI imports the library, never the reverse
}


@dataclass(frozen=True)
class Import:
    importer: str     # module name, e.g. simsearch.index
    function: str     # the outermost function or class the import sits in; "" at module level
    name: str         # the module imported (for `from M import x`: M and M.x are both recorded)
    line: int

    def __str__(self) -> str:
        where = f" (in {self.function})" if self.function else ""
        return f"simsearch/{self.path}:{self.line}{where} imports {self.name}"

    @property
    def path(self) -> str:
        parts = self.importer.split(".")[1:]
        folder = PACKAGE.joinpath(*parts)
        return str((folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py"))
                   .relative_to(PACKAGE))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[Import]:
    """Every import statement of a module, with the function it sits in, plus
    importlib.import_module / __import__ calls with a constant name."""
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            scope = function
            if not function and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.ClassDef)):
                scope = child.name
            if isinstance(child, ast.Import):
                found.extend(Import(importer, scope, a.name, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from . import x, from .x import y
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                found.append(Import(importer, scope, base, child.lineno))
                found.extend(Import(importer, scope, f"{base}.{a.name}", child.lineno)
                             for a in child.names)
            elif (isinstance(child, ast.Call) and child.args
                  and isinstance(child.args[0], ast.Constant) and isinstance(child.args[0].value, str)
                  and ((isinstance(child.func, ast.Attribute) and child.func.attr == "import_module")
                       or (isinstance(child.func, ast.Name) and child.func.id == "__import__"))):
                found.append(Import(importer, scope, child.args[0].value, child.lineno))
            visit(child, scope)

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return found


def all_imports() -> list[Import]:
    return [i for path in sorted(PACKAGE.rglob("*.py")) for i in imports_of(path)]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def allowed(imp: Import, homes: tuple[str, ...]) -> bool:
    for home in homes:
        module, _, function = home.partition(":")
        if _within(imp.importer, module) and (not function or imp.function == function):
            return True
    return False


def broken_rules(imports: list[Import]) -> list[str]:
    """One line per import statement and rule it breaks."""
    broken: dict[tuple, Import] = {}
    for imp in imports:
        for target, homes in RULES.items():
            if _within(imp.name, target) and not _within(imp.importer, target) \
                    and not allowed(imp, homes):
                key = (imp.importer, imp.line, target)
                if key not in broken or len(imp.name) < len(broken[key].name):
                    broken[key] = imp
    return [f"{imp}: {target} belongs only in {', '.join(RULES[target]) or 'no simsearch module'}"
            for (_, _, target), imp in sorted(broken.items())]


def runtime_modules() -> list[str]:
    names = [module_name(p) for p in sorted(PACKAGE.rglob("*.py"))]
    return [n for n in names if not any(_within(n, side) for side in TORCH_SIDE)]


# --- the import rules ----------------------------------------------------------------------


def test_the_import_reader_sees_every_kind_of_import(tmp_path, monkeypatch):
    folder = tmp_path / "simsearch" / "sub"
    folder.mkdir(parents=True)
    (tmp_path / "simsearch" / "__init__.py").write_text("")
    (folder / "__init__.py").write_text("")
    source = folder / "mod.py"
    source.write_text("import faiss.contrib as fc\n"
                      "from . import cli\n"
                      "from ..model import EmbeddingNet\n"
                      "def f():\n"
                      "    if True:\n"
                      "        import torch\n"
                      "class C:\n"
                      "    def g(self):\n"
                      "        importlib.import_module('sqlite3')\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    seen = {(i.name, i.function, i.line) for i in imports_of(source)}
    assert {("faiss.contrib", "", 1), ("simsearch.sub.cli", "", 2), ("simsearch.model", "", 3),
            ("torch", "f", 6), ("sqlite3", "C", 9)} <= seen


def test_the_rules_catch_a_violation_and_allow_the_homes():
    def imp(importer, name, function=""):
        return Import(importer, function, name, 1)

    assert broken_rules([imp("simsearch.dedupe", "faiss")])
    assert broken_rules([imp("simsearch.embedder", "simsearch.export", "_from_safetensors")])
    assert broken_rules([imp("simsearch.index", "simsearch.cli.main")])
    assert broken_rules([imp("simsearch.cli", "simsearch.train")])  # only inside train_cmd
    assert broken_rules([imp("simsearch.cli", "simsearch.train", "eval_cmd")])
    assert broken_rules([imp("simsearch.catalog", "torch.nn")])
    assert not broken_rules([imp("simsearch.cli", "simsearch.train", "train_cmd"),
                             imp("simsearch.vectors", "faiss"),
                             imp("simsearch.train.trainer", "torch"),
                             imp("simsearch.train.trainer", "simsearch.export"),
                             imp("simsearch.export", "onnxruntime.quantization"),
                             imp("simsearch.index", "simsearch.models"),  # not simsearch.model
                             imp("simsearch.catalog", "sqlite3")])


def test_every_module_keeps_the_import_rules():
    broken = broken_rules(all_imports())
    if broken:
        pytest.fail("import rules broken (see RULES in tests/test_structure.py):\n"
                    + "\n".join(broken), pytrace=False)


def test_every_error_type_is_defined_in_errors_py():
    # a caller catches simsearch's errors without importing the module that raises them
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            bases = [ast.unparse(b) for b in getattr(node, "bases", [])]
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and any(
                    b.endswith(("Error", "Exception")) for b in bases):  # _Private: never leaves its module
                elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
    assert not elsewhere, "define these in simsearch/errors.py:\n" + "\n".join(elsewhere)


# --- the light install -----------------------------------------------------------------------


def _without_train_extra(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where torch and the rest of the train extra cannot be
    imported, as in `pip install .` without extras."""
    block = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in TRAIN_EXTRA)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", block + code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return _without_train_extra("sys.argv = ['simsearch'] + sys.argv[1:]\n"
                                "from simsearch.cli import main\nmain()", *args, cwd=cwd)


def test_every_runtime_module_imports_without_torch():
    modules = runtime_modules()
    assert "simsearch.cli" in modules and "simsearch.index" in modules
    done = _without_train_extra("import importlib, json\n"
                                f"for m in {modules!r}:\n    importlib.import_module(m)\n"
                                f"print(json.dumps(sorted(m for m in {TRAIN_EXTRA!r} "
                                "if sys.modules.get(m) is not None)))")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_help_of_every_command_works_without_torch():
    from simsearch.cli import main

    for args in [["--help"]] + [[command, "--help"] for command in main.commands]:
        done = _cli(*args)
        assert done.returncode == 0 and "Usage:" in done.stdout, (args, done.stderr)
    assert "pip install 'simsearch[train]'" in _cli("train", "--help").stdout


def test_train_without_torch_says_what_to_install(tmp_path):
    (tmp_path / "photos").mkdir()
    done = _cli("train", "--unlabeled", str(tmp_path / "photos"), "--out", str(tmp_path / "run"))
    assert done.returncode == 1
    assert "pip install 'simsearch[train]'" in done.stderr and "torch" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_index_query_dedupe_check_export_run_without_torch(tmp_path, tiny_model, photos):
    index = ["--index", str(tmp_path / "idx")]
    steps = [["index", str(photos), "--model", str(tiny_model / "model.onnx"), "-q", *index],
             ["query", str(photos / "img002.jpg"), "-k", "2", "--json", *index],
             ["dedupe", "--json", *index],
             ["check", *index],
             ["export", "--out", str(tmp_path / "v.npz"), *index]]
    for args in steps:
        done = _cli(*args)
        assert done.returncode == 0, (args, done.stderr)
    query = json.loads(_cli(*steps[1]).stdout)
    assert query["results"][0]["path"] == str(photos / "img002.jpg")
    assert (tmp_path / "v.npz").is_file()


def test_the_light_install_leaves_torch_out_and_the_test_extra_puts_it_back():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        return {line.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
                for line in text.splitlines() if line.strip()}

    light = names(setup["options"]["install_requires"])
    train = names(setup["options.extras_require"]["train"])
    assert not light & set(TRAIN_EXTRA) and set(TRAIN_EXTRA) <= train
    # CI installs '.[test]': the torch tests must run there, not skip
    assert "simsearch" in names(setup["options.extras_require"]["test"])
    assert "simsearch[train]" in setup["options.extras_require"]["test"]


@pytest.mark.parametrize("module", TORCH_SIDE)
def test_the_training_side_says_what_to_install_without_torch(module):
    done = _without_train_extra(f"import {module}")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("simsearch.errors.MissingDependencyError") \
        and "pip install 'simsearch[train]'" in last, done.stderr
