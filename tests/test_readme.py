"""The README's quick start works as written: its Python snippet and the demo command."""

import re
from pathlib import Path

from click.testing import CliRunner
from imis_lite.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_snippet_runs_and_segments_the_liver(capsys):
    snippet = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    dice = float(re.search(r"liver Dice ([0-9.]+)", printed).group(1))
    assert dice > 0.8  # LiteMedSAM (PyTorch) scores 0.83 on this slice's liver from its tight box


def test_demo_prints_dice_per_organ():
    result = CliRunner().invoke(main, ["demo", "--threads", "2"])
    assert result.exit_code == 0, result.output
    mean = float(re.search(r"mean Dice ([0-9.]+)", result.output).group(1))
    assert result.output.count(" Dice ") == 11  # ten organs and the summary
    assert mean > 0.8
