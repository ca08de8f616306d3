"""common.cli.run: the single exit path of every entry point."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from common import cli
from common.checkpoint import CheckpointError
from common.config import ConfigError
from common.errors import InputError, RecipeError, RunError, UsageError
from common.feature_spec import FeatureSpecError


def _run(main, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        cli.run(main, [])
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "code"),
    [(UsageError("bad flag --x"), 2), (InputError("bad file f.csv line 3"), 2), (RunError("loss is nan"), 1)],
)
def test_recipe_error_is_one_line_with_its_exit_code(error: RecipeError, code: int, capsys) -> None:
    def main(argv):
        raise error

    status, err = _run(main, capsys)
    assert status == code
    assert err == f"error: {error}\n"


def test_full_disk_is_one_line_naming_the_file(capsys) -> None:
    def main(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/out/x.bin")

    status, err = _run(main, capsys)
    assert status == 1 and err.startswith("error: no space left on device") and "/out/x.bin" in err


def test_success_exits_zero_and_passes_argv_without_local_rank(capsys) -> None:
    seen = []
    with pytest.raises(SystemExit) as exit_:
        cli.run(seen.append, ["--a", "1", "--local-rank=0"])
    assert exit_.value.code == 0 and seen == [["--a", "1"]]


def test_a_bug_keeps_its_traceback() -> None:
    code = "from common import cli\ndef main(argv):\n    raise KeyError('bug')\ncli.run(main, [])\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" in out.stderr and "KeyError" in out.stderr


def test_module_errors_are_recipe_errors() -> None:
    assert issubclass(ConfigError, UsageError) and issubclass(ConfigError, ValueError)
    assert issubclass(FeatureSpecError, InputError) and issubclass(CheckpointError, InputError)
