"""The dtype names a FeatureSpec may declare, and the error every spec problem raises.

Split from common/feature_spec.py so that the chunk readers and the tiny dataset writer share them
without importing the FeatureSpec class. No torch import at load time (see feature_spec's docstring).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import InputError

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64")


class FeatureSpecError(InputError):
    """A spec that cannot be loaded, validated or read; the message names the file, key and expectation."""


def parse_dtype(name: str) -> np.dtype:
    """Normalise a spec dtype: NCF specs use torch spellings, DLRM and SIM numpy ones (as NVIDIA's do).

    Only sized names are accepted, because 'float' is float32 to torch but float64 to numpy.
    """
    bare = name.removeprefix("torch.") if isinstance(name, str) else None
    if bare in DTYPE_NAMES:
        return np.dtype(bare)
    hint = " (it has no numpy equivalent)" if bare == "bfloat16" else ""
    raise FeatureSpecError(f"unknown dtype {name!r}{hint}; expected one of {DTYPE_NAMES}, or 'torch.' + one")


def is_torch(value: Any, kind: str) -> bool:
    """isinstance(value, torch.<kind>) without importing torch: if nothing imported it, value is not one."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, getattr(torch, kind))


def _as_numpy_dtype(dtype: np.dtype | torch.dtype | str) -> np.dtype:
    return parse_dtype(
        str(dtype) if isinstance(dtype, str) or is_torch(dtype, "dtype") else np.dtype(dtype).name
    )


def dtype_name(dtype: np.dtype | torch.dtype | str) -> str:
    """Numpy spelling ('int64'): the form to write into new specs, whatever the input used."""
    return _as_numpy_dtype(dtype).name


def to_torch_dtype(dtype: np.dtype | torch.dtype | str) -> torch.dtype:
    import torch

    return getattr(torch, _as_numpy_dtype(dtype).name)


def is_positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def smallest_int_dtype(cardinality: int) -> np.dtype:
    """Narrowest signed int holding ids 0..cardinality-1; DLRM's categorical files use it to cut IO.

    DLE took the first type whose max *exceeds* the cardinality (127 -> int16); only the largest id has to
    fit, so 128 -> int8 here. Readers use the dtype declared in the spec, so files of either rule load.
    """
    if not is_positive_int(cardinality):
        raise FeatureSpecError(f"cardinality must be a positive integer, got {cardinality!r}")
    for name in ("int8", "int16", "int32", "int64"):
        if cardinality - 1 <= np.iinfo(name).max:
            return np.dtype(name)
    raise FeatureSpecError(f"cardinality {cardinality} does not fit in int64")
