"""The README's promises that code can check: the mapping table is the rules' own, every command is documented."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from nmig.cli import main
from nmig.importer.rules import mapping_table_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_mapping_section() -> str:
    """docs/mapping.md's tables (generated from nmig/importer/rules.py) as they stand in the README."""
    body = mapping_table_markdown().split("\n## ", 1)[1]
    return "### " + body.replace("\n## ", "\n### ")


def test_readme_holds_the_full_mapping_table_of_the_rules() -> None:
    assert readme_mapping_section() in README.read_text(encoding="utf-8")


def test_readme_documents_every_command_and_option() -> None:
    text = README.read_text(encoding="utf-8")
    runner = CliRunner()
    commands = {"export", "import", "verify", "inspect", "migrate", "demo"}
    assert commands <= set(main.commands)
    for name in sorted(commands):
        assert f"### `nmig {name}`" in text, name
        command = main.commands[name]
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert opt in text, f"nmig {name} {opt} is not in the README"
        assert runner.invoke(main, [name, "--help"]).exit_code == 0
