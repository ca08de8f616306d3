"""Shared pieces of the raw-format synthetic writers (each recipe owns its own: ncf.synthetic writes
MovieLens, dlrm.synthetic Criteo, sim.synthetic Amazon 2014).

Why: the preparation code must be tested on files that look exactly like the real downloads, and a trained
model must be compared to the generator's oracle, which only a synthetic generator can expose. Every writer
is vectorised numpy on a seeded ``numpy.random.Generator`` and the same arguments give byte-identical files;
these helpers are what keeps that true in all three (text joined the same way, gzip without a timestamp).
The generators are meant for small/medium sizes (tests, smoke runs), not for simulating the full datasets.
"""

from __future__ import annotations

import gzip as _gzip
from pathlib import Path

import numpy as np


def join_lines(columns: list[np.ndarray], sep: str) -> str:
    """Join equal-length columns into newline-terminated lines (numbers become strings in numpy)."""
    lists = [np.asarray(col).astype(str).tolist() for col in columns]
    return "\n".join(map(sep.join, zip(*lists))) + "\n"


def write_text(path: Path, text: str, compress: bool = False) -> None:
    """Write UTF-8 bytes with '\\n' endings; gzip with mtime=0 so seeded output stays byte-identical."""
    data = text.encode("utf-8")
    if compress:
        with open(path, "wb") as raw, _gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(data)
    else:
        path.write_bytes(data)
