"""The CLI's contract for bad input, shared by the tests that feed it: exit status 2 and
one line naming the problem, never a traceback."""

from __future__ import annotations

import pytest

from tractable.cli import main


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> str:
    """Run `tractable argv`; assert exit 2 and one `tractable: error:` line holding `match`."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tractable: error: ") and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert match in err, err
    return err
