"""No comment, docstring, message or README cites a document that is not in the repository.

The recipes were written against reference digests kept outside the repo; a citation of one of them
(a bare `<name>.md` that no repo path resolves to, or the outside folder itself) means nothing to a
reader, so the fact or the public upstream source must be written out instead.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = (".py", ".md", ".sh", ".yaml", ".yml", ".toml")
# `<path-ish prefix><digest name>.md`: the prefix lets `docs/x/<name>.md` count when that path exists.
DIGEST = re.compile(r"([\w./-]*?)\b((?:ncf|dlrm|sim|architecture)\.md)\b")
OUTSIDE = re.compile("shared" + "/reference")  # split so that this line does not match itself


def outside_citations(text: str, folder: Path) -> list[str]:
    """The citations in `text` of digest documents that resolve to no file under ROOT or `folder`."""
    found = []
    for m in DIGEST.finditer(text):
        path = m.group(1) + m.group(2)
        if not ((ROOT / path).is_file() or (folder / path).is_file()):
            found.append(path)
    found.extend(m.group(0) for m in OUTSIDE.finditer(text))
    return found


def repo_text_files() -> list[Path]:
    """Tracked files plus new untracked ones git does not ignore, with a documentation/source suffix."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot list the repository's files")
    names = [n for n in out.decode().split("\0") if n.endswith(SUFFIXES)]
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def test_checker_flags_outside_digests_and_accepts_repo_paths() -> None:
    folder, dlrm, sim = "shared" + "/reference", "dlrm" + ".md", "sim" + ".md"  # split: no self-match
    bad = f"per the spec ({dlrm} §4.10) and {folder}/{sim}"
    assert outside_citations(bad, ROOT) == [dlrm, f"{folder}/{sim}", folder]
    assert outside_citations("see dlrm/README.md and ncf/README.md", ROOT) == []


def test_no_file_cites_a_document_outside_the_repo() -> None:
    offenders = []
    for path in repo_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for cited in outside_citations(line, path.parent):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {cited}")
    assert not offenders, "citations of documents not in the repo:\n" + "\n".join(offenders)
