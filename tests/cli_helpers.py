"""Running the edgenas command line in a test, and checking its one-line errors."""

from __future__ import annotations

from nas.cli.main import main


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgenas: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
