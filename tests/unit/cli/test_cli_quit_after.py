"""`--version` and the tray's `--quit-after` (used by smoke tests of the packaged app)."""

from __future__ import annotations

import pytest

from app import __version__
from app.cli import _parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"sitesync {__version__}"


@pytest.mark.parametrize("command", ["tray", "run"])
def test_quit_after_takes_seconds(command):
    assert _parser().parse_args([command, "--quit-after", "2.5"]).quit_after == 2.5
    assert _parser().parse_args([command]).quit_after is None


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_quit_after_rejects_what_is_not_a_positive_number(value, capsys):
    with pytest.raises(SystemExit) as done:
        _parser().parse_args(["tray", "--quit-after", value])
    assert done.value.code == 2
    assert "expected a number of seconds above 0" in capsys.readouterr().err
