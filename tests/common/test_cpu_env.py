"""common.cpu_env turns transparent huge pages on for PyTorch's CPU allocator before torch is imported,
unless the user set the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("recipe", ["ncf", "dlrm", "sim"])
@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0")])
def test_recipe_import_sets_thp_before_torch(recipe, preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    code = f"import sys, os, {recipe}; print('torch' in sys.modules, os.environ['THP_MEM_ALLOC_ENABLE'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", expected]
