"""The package map holds: platform code (DAGs, the UI plugin, every ``training_lib`` package but ``local``)
never imports ``training_lib.local``, the tooling that only runs on a developer's machine or in tests, nor
reads the local stack's settings (``StackSettings``: state folder, admin login, ports, workers)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "training_lib.local"
PLATFORM_FILES = sorted(
    path
    for folder in ("dags", "plugins", "training_lib")
    for path in (ROOT / folder).rglob("*.py")
    if LOCAL.replace(".", "/") not in path.relative_to(ROOT).as_posix()
)


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from … import`` names, at any depth of the file (also inside functions)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_the_check_sees_local_imports_in_every_form() -> None:
    source = (
        "import training_lib.local.stack\n"
        "def f():\n    from training_lib.local import demo\n"
        "def g():\n    from training_lib import local\n"
    )
    found = {m for m in imported_modules(source) if m == LOCAL or m.startswith(LOCAL + ".")}
    assert found == {"training_lib.local.stack", "training_lib.local", "training_lib.local.demo"}
    assert not {m for m in imported_modules("from training_lib.lake import storage\n") if m.startswith(LOCAL)}


def test_there_are_platform_files_to_check() -> None:
    folders = {path.relative_to(ROOT).parts[0] for path in PLATFORM_FILES}
    assert folders == {"dags", "plugins", "training_lib"}
    assert all("local" not in path.relative_to(ROOT / "training_lib").parts for path in PLATFORM_FILES
               if path.is_relative_to(ROOT / "training_lib"))  # fmt: skip


@pytest.mark.parametrize("path", PLATFORM_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_platform_code_never_imports_local_tooling(path: Path) -> None:
    offending = sorted(m for m in imported_modules(path.read_text()) if m == LOCAL or m.startswith(LOCAL + "."))
    assert offending == [], f"{path.relative_to(ROOT)} imports {offending}: platform code must not depend on {LOCAL}"


STACK_SETTINGS_NAMES = {"training_lib.config.StackSettings", "training_lib.config.load_stack_settings"}


@pytest.mark.parametrize(
    "path",
    [p for p in PLATFORM_FILES if p != ROOT / "training_lib" / "config.py"],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_platform_code_never_reads_the_local_stack_settings(path: Path) -> None:
    offending = sorted(imported_modules(path.read_text()) & STACK_SETTINGS_NAMES)
    assert offending == [], f"{path.relative_to(ROOT)} imports {offending}: the platform reads Settings only"


def test_the_settings_check_sees_an_import_of_the_stack_settings() -> None:
    source = "def f():\n    from training_lib.config import Settings, load_stack_settings\n"
    assert imported_modules(source) & STACK_SETTINGS_NAMES == {"training_lib.config.load_stack_settings"}
