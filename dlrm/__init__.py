"""DLRM recipe: Criteo click logs, AUC."""

import common.cpu_env  # noqa: F401  (before torch: see common/cpu_env.py)
