"""common/prepare_lib.sh, the steps the three prepare_dataset.sh scripts share (each script's own test runs
it end to end): argument checks, the already-prepared stop, and a download that never leaves a partial file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "common" / "prepare_lib.sh"


def run(body: str, *args: str, cwd: Path, path_prefix: Path | None = None) -> subprocess.CompletedProcess:
    """Run `body` in a script that sources the library by a path relative to `cwd`, as a recipe script would."""
    script = f'set -euo pipefail\nusage() {{ echo "usage: demo" >&2; }}\nsource "{os.path.relpath(LIB, cwd)}"\n{body}'
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the library must set it
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-c", script, "demo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=30
    )


def fake_curl(directory: Path, body: str) -> Path:
    """A curl on PATH that writes what `body` says to its -o file (no network)."""
    directory.mkdir()
    curl = directory / "curl"
    curl.write_text(
        '#!/usr/bin/env bash\nwhile [[ $# -gt 0 ]]; do case "$1" in -o) out="$2"; shift 2;; *) shift;; esac; done\n'
        + body
    )
    curl.chmod(0o755)
    return directory


def test_check_args_help_and_too_few(tmp_path: Path) -> None:
    body = 'check_args 2 "$@"\necho "ran with $#"'
    assert run(body, "a", "b", cwd=tmp_path).stdout == "ran with 2\n"
    helped = run(body, "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "usage: demo" in helped.stderr and "ran" not in helped.stdout
    few = run(body, "a", cwd=tmp_path)
    assert few.returncode == 2 and "usage: demo" in few.stderr and "ran" not in few.stdout


def test_sourcing_puts_the_repository_on_pythonpath(tmp_path: Path) -> None:
    done = run('echo "$PYTHONPATH"; python -c "import common.tiny_dataset"', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(":")[0].strip() == str(ROOT)


def test_exit_if_prepared_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    body = 'exit_if_prepared out "$@"\necho "preparing"'
    assert run(body, cwd=tmp_path).stdout == "preparing\n"
    (tmp_path / "out" / "feature_spec.yaml").write_text("")
    stopped = run(body, "--workers", "2", cwd=tmp_path)
    assert (
        stopped.returncode == 0 and "already prepared" in stopped.stdout and "preparing" not in stopped.stdout
    )
    assert run(body, "--overwrite", cwd=tmp_path).stdout == "preparing\n"


def test_fetch_renames_only_a_complete_download(tmp_path: Path) -> None:
    ok = fake_curl(tmp_path / "ok", 'echo "payload" > "$out"\n')
    done = run(
        'fetch "$1" "$2"', "http://example.invalid/a.zip", "raw dir/a.zip", cwd=tmp_path, path_prefix=ok
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "raw dir" / "a.zip").read_text() == "payload\n"
    assert not (tmp_path / "raw dir" / "a.zip.part").exists()

    broken = fake_curl(tmp_path / "broken", 'echo "half" > "$out"\nexit 22\n')  # curl -f on a 404, mid-way
    failed = run(
        'fetch "$1" "$2"', "http://example.invalid/b.zip", "raw dir/b.zip", cwd=tmp_path, path_prefix=broken
    )
    assert failed.returncode == 22
    assert sorted(p.name for p in (tmp_path / "raw dir").iterdir()) == ["a.zip"]  # no b.zip, no b.zip.part
