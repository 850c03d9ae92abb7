"""Documentation that cannot drift: the README's settings tables match ``Settings``, every file
a doc or a docstring cites exists, and every command the docs show exists with its options."""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posegen.cli import app
from posegen.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]

# --- settings ---------------------------------------------------------------------------------


def _table_settings(text: str) -> set[str]:
    """Every ``POSEGEN_*`` name in the first column of a table whose header is ``variable``."""
    names: set[str] = set()
    in_table = False
    for line in text.splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "variable":
            in_table = True
        elif in_table:
            names.update(re.findall(r"`(POSEGEN_[A-Z0-9_]+)`", cells[0]))
    return names


def test_every_setting_is_in_a_readme_table_and_every_row_is_a_setting() -> None:
    documented = _table_settings(README.read_text())
    fields = {f"POSEGEN_{name.upper()}" for name in Settings.model_fields}
    assert sorted(fields - documented) == [], "settings missing from the README tables"
    assert sorted(documented - fields) == [], "README rows that name no setting"


def test_the_table_reader_sees_the_rows_it_should() -> None:
    sample = (
        "| variable | default | meaning |\n|---|---|---|\n| `POSEGEN_A` / `POSEGEN_B` | 1 | x |\n"
    )
    assert _table_settings(sample + "\nprose `POSEGEN_C`\n") == {"POSEGEN_A", "POSEGEN_B"}


# --- cited files ------------------------------------------------------------------------------

_FILE = re.compile(
    r"(?<![\w/.:-])((?:[\w.-]+/)*[\w-]+(?:\.[\w-]+)*\.(?:md|py|json|html|css|js|toml|txt|ya?ml|sh|ini))\b"
)
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
#: Names the docs mention that are not files of this repository: files of a user's model folder,
#: a placeholder argument, a product name, and URL paths of routes.
_NOT_OURS = {"model_index.json", "config.json", "KEYPOINTS.json", "Chart.js", "openapi.json"}


def _tracked() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def _python_prose(path: Path) -> str:
    """A module's docstrings and comments: where a source file cites other files."""
    source = path.read_text()
    parts = [
        doc
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and (doc := ast.get_docstring(node))
    ]
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            parts.append(tok.string)
    return "\n".join(parts)


def _resolves(name: str, where: Path, tracked: set[str], basenames: set[str]) -> bool:
    if name in _NOT_OURS or name.startswith(("http:", "https:", "mailto:")):
        return True
    if "/" not in name:
        return name in basenames
    candidates = [
        (where.parent / name).resolve(),
        ROOT / name,
        ROOT / "src" / "posegen" / name,
        ROOT / "src" / name,
    ]
    # Cited paths are read relative to the doc, the repository, or the package.
    return any(str(c.relative_to(ROOT)) in tracked for c in candidates if c.is_relative_to(ROOT))


def _citations(text: str) -> set[str]:
    found = {m.group(1) for m in _FILE.finditer(text)}
    found |= {m.group(1) for m in _LINK.finditer(text)}
    # Placeholders and globs name no one file.
    return {f for f in found if not re.search(r"[<>*{}]", f)}


def test_every_cited_file_exists() -> None:
    tracked = _tracked()
    basenames = {Path(p).name for p in tracked}
    sources = [*DOCS, *sorted((ROOT / "src").rglob("*.py"))]
    missing = []
    for path in sources:
        text = _python_prose(path) if path.suffix == ".py" else path.read_text()
        for name in sorted(_citations(text)):
            if not _resolves(name, path, tracked, basenames):
                missing.append(f"{path.relative_to(ROOT)} cites {name}")
    assert missing == []


def test_the_citation_check_catches_a_missing_document(tmp_path: Path) -> None:
    tracked = _tracked()
    basenames = {Path(p).name for p in tracked}
    doc = ROOT / "README.md"
    text = "See DESIGN.md and [the guide](docs/nowhere.md), `src/posegen/config.py`, `x/<id>.png`."
    cited = _citations(text)
    assert cited == {"DESIGN.md", "docs/nowhere.md", "src/posegen/config.py"}
    assert [c for c in sorted(cited) if not _resolves(c, doc, tracked, basenames)] == [
        "DESIGN.md",
        "docs/nowhere.md",
    ]
    module = tmp_path / "m.py"
    module.write_text('"""Cites INTERFACES.md."""\n\nx = "resp.json"  # see STYLE.md\n')
    assert _citations(_python_prose(module)) == {"INTERFACES.md", "STYLE.md"}


# --- commands ---------------------------------------------------------------------------------


def _readme_commands() -> list[tuple[list[str], list[str]]]:
    """(command path, options) of every ``posegen ...`` the docs show: the README's command
    table (siblings after a ``/`` share the first one's group) and shell lines in code blocks."""
    out: list[tuple[list[str], list[str]]] = []
    for doc in DOCS:
        fenced = False
        for line in doc.read_text().splitlines():
            if line.startswith("```"):
                fenced = not fenced
            elif line.startswith("| `posegen "):
                first_cell = line.strip("|").split(" | ")[0]
                snippets = re.findall(r"`([^`]+)`", first_cell)
                path: list[str] = []
                for i, snippet in enumerate(snippets):
                    words = snippet.split()
                    if words[0] == "posegen":
                        path = _path(words[1:])
                        out.append((path, _options(snippet)))
                    elif i and path:
                        sub = _path(words)
                        # `maps clear` names its group; `downgrade REV` is a sibling of upgrade.
                        full = sub if sub[0] == path[0] else [*path[:-1], *sub]
                        out.append((full, _options(snippet)))
            elif fenced and re.match(r"\s*(\$ )?posegen [a-z]", line):
                words = line.split("#")[0].split()
                words = words[words.index("posegen") + 1 :]
                out.append((_path(words), _options(" ".join(words))))
    return out


def _path(words: list[str]) -> list[str]:
    path = []
    for word in words:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        path.append(word)
    return path


def _options(snippet: str) -> list[str]:
    return sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", snippet)))


COMMANDS = _readme_commands()


def test_the_docs_show_the_commands() -> None:
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"db upgrade", "db downgrade", "users revoke-key", "maps clear", "worker"} <= paths


@pytest.mark.parametrize(
    ("path", "options"), COMMANDS, ids=[" ".join(p) or "?" for p, _ in COMMANDS]
)
def test_each_documented_command_exists_with_its_options(
    path: list[str], options: list[str]
) -> None:
    assert path, "a documented command line names no command"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, f"`posegen {' '.join(path)}` does not exist: {result.output}"
    for option in options:
        assert option in result.output, f"`posegen {' '.join(path)}` has no {option}"
