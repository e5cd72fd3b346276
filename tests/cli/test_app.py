"""radvlsm.cli.app: the command list of ``radvlsm --help`` and ``--version``."""

from __future__ import annotations

from typer.testing import CliRunner

from radvlsm import __version__
from radvlsm.cli.app import app

runner = CliRunner()


def _commands(result_text: str) -> dict[str, str]:
    """Command name → its help in the 'Commands' panel (wrapped lines joined)."""
    panel = result_text.split("Commands", 1)[1]
    rows: dict[str, str] = {}
    name = ""
    for line in panel.splitlines():
        cells = line.strip("│╭╰─╮╯ ").split(None, 1)
        if not cells:
            continue
        if line.startswith("│ ") and not line.startswith("│  "):
            name = cells[0]
            rows[name] = cells[1] if len(cells) > 1 else ""
        elif name:
            rows[name] += " " + " ".join(cells)
    return rows


def test_every_command_has_a_one_line_summary() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = _commands(result.output)
    assert set(rows) == {"evaluate", "segment", "diagnose", "radiomics", "report", "train"}
    for name, text in rows.items():
        assert text.endswith("."), (name, text)
        assert text.count(". ") == 0, (name, text)  # one sentence, not a docstring's paragraph
        assert len(text) <= 100, (name, text)
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert set(_commands(result.output)) == {"segmenter", "localizer", "diagnoser"}
    assert "LIDC" in _commands(result.output)["diagnoser"]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"radvlsm {__version__}"
