"""Global shuffle of the training rows out of core: scatter into K bucket files, then permute each bucket.

Train row r (its position in the unshuffled train order: days 0..22, or the first 6/7 of train.txt)
belongs to bucket hash(seed, r) mod K (splitmix64: a stateless hash, so the number of rows every
segment sends to every bucket is known before any row is encoded). An encoding task sorts its rows by
bucket (stable) and pwrites each group at its precomputed offset in bucket_{b}.bin, so a bucket file
holds its rows in train order however many workers ran. Bucket b is then read back whole, permuted with
np.random.default_rng([seed, b]) and appended to the final split-binary files. An i.i.d. bucket per row
plus a uniform permutation inside each bucket is a uniform permutation of all rows; the output depends
only on (input, seed, K). Memory: one bucket; disk: the bucket files (= train output) until written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

RECORD_CHUNK_ROWS = 1 << 18  # rows gathered per write: keeps the permuted copy small
_SPLITMIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def record_dtype(cat_dtypes: Sequence[np.dtype | str], num_numerical: int = 13) -> np.dtype:
    """One packed train row in the final dtypes (bool label, float16 numericals, per-feature int ids)."""
    fields = [("label", "?"), ("numerical", "<f2", (num_numerical,))]
    fields += [(f"cat_{j}", np.dtype(dt).newbyteorder("<")) for j, dt in enumerate(cat_dtypes)]
    return np.dtype(fields)


def num_buckets(train_bytes: int, memory_bytes: int) -> int:
    """K so that the largest bucket (a few % above the mean: binomial spread) fits half the budget."""
    return max(1, math.ceil(1.1 * train_bytes / max(memory_bytes // 2, 1)))


def bucket_of(first_row: int, count: int, seed: int, buckets: int) -> np.ndarray:
    """Bucket of train rows first_row .. first_row + count - 1 (uint16 when K allows: radix sort)."""
    key = np.random.SeedSequence([seed, 0xB0C4E7]).generate_state(1, np.uint64)[0]
    with np.errstate(over="ignore"):
        z = (np.arange(first_row, first_row + count, dtype=np.uint64) + key) * _SPLITMIX[0]
        z = (z ^ (z >> np.uint64(30))) * _SPLITMIX[1]
        z = (z ^ (z >> np.uint64(27))) * _SPLITMIX[2]
        z ^= z >> np.uint64(31)
        top = (z >> np.uint64(32)) * np.uint64(buckets) >> np.uint64(32)  # multiply-shift: [0, K)
    return top.astype(np.uint16 if buckets <= 1 << 16 else np.uint32)


def bucket_counts(rows: tuple[int, int], seed: int, buckets: int) -> np.ndarray:
    """int64 [K]: how many of the train rows [first, first + count) fall in each bucket."""
    first, count = rows
    counts = np.zeros(buckets, np.int64)
    for lo in range(first, first + count, 1 << 24):  # 16M rows at a time: bounded memory
        hi = min(lo + (1 << 24), first + count)
        counts += np.bincount(bucket_of(lo, hi - lo, seed, buckets), minlength=buckets)
    return counts


def write_buckets(
    directory: Path, records: np.ndarray, first_row: int, seed: int, offsets: np.ndarray
) -> None:
    """pwrite train rows first_row.. into bucket_{b}.bin at row offsets[b], train order kept per bucket."""
    bucket = bucket_of(first_row, len(records), seed, len(offsets))
    order = np.argsort(bucket, kind="stable")
    grouped = records[order].view(np.uint8).reshape(len(records), -1)
    ends = np.cumsum(np.bincount(bucket, minlength=len(offsets)))
    start = 0
    for b, end in enumerate(ends.tolist()):
        if end > start:
            data = grouped[start:end].reshape(-1)
            fd = os.open(directory / f"bucket_{b}.bin", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                pwrite_all(fd, data, int(offsets[b]) * records.dtype.itemsize)
            finally:
                os.close(fd)
        start = end


def pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    """Write all of `data` (uint8) at `offset`; pwrite lets concurrent workers fill one file."""
    written = 0
    while written < data.nbytes:  # pwrite may write less than asked (signals, >2 GiB writes)
        written += os.pwrite(fd, data[written:], offset + written)


def assemble(
    directory: Path,
    counts: np.ndarray,
    dtype: np.dtype,
    seed: int,
    out_dir: Path,
    progress: Callable[[int], None] = lambda rows: None,
) -> int:
    """Append permuted buckets 0..K-1 to out_dir/{label,numerical,cat_j}.bin; bucket files are deleted."""
    streams = {name: open(out_dir / f"{name}.bin", "wb") for name in dtype.names}  # noqa: SIM115
    written = 0
    try:
        for b, rows in enumerate(counts.tolist()):
            path = directory / f"bucket_{b}.bin"
            if not rows:
                continue
            bucket = np.fromfile(path, dtype)
            if len(bucket) != rows:
                raise OSError(f"{path}: {len(bucket)} rows, expected {rows}")
            perm = np.random.default_rng([seed, b]).permutation(rows)
            for lo in range(0, rows, RECORD_CHUNK_ROWS):
                chunk = bucket[perm[lo : lo + RECORD_CHUNK_ROWS]]
                for name, stream in streams.items():
                    stream.write(np.ascontiguousarray(chunk[name]).reshape(-1).view(np.uint8))
                progress(len(chunk))
            written += rows
            del bucket, perm
            os.remove(path)
    finally:
        for stream in streams.values():
            stream.close()
    return written
