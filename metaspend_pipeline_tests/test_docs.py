"""The README and docs/ as a newcomer reads them: short, every command listed, every link inside the
repository and pointing at something that exists."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from metaspend_pipeline.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "README.md", ROOT / "bench" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _commands(group: click.Group, prefix: str = "metaspend") -> list[str]:
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += _commands(command, f"{prefix} {name}")
        else:
            out.append(f"{prefix} {name}")
    return out


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of the page's headings: lower case, punctuation dropped, spaces as dashes."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_readme_is_at_most_200_lines_with_no_placeholder_left() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert re.findall(r"<[A-Z][A-Z_]+>", text) == []  # a figure still to measure, such as <DEMO_SECONDS>


def test_every_command_has_its_line_in_the_readme() -> None:
    table = [line for line in README.read_text().splitlines() if line.startswith("| `metaspend ")]
    commands = _commands(cli)
    assert len(commands) >= 14  # the walk found the groups' commands, not only the groups
    for command in commands:
        assert any(line.startswith(f"| `{command}") for line in table), f"README.md has no line for `{command}`"
    for line in table:  # and no line for a command that is gone
        listed = line.split("`")[1].split(" [")[0].split(" --")[0]
        assert listed in commands, f"README.md lists `{listed}`, which is not a command"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(ROOT), f"{page.name} links {target}, outside the repository"
        assert resolved.exists(), f"{page.name} links {target}, which does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name} links {target}: no such heading"
