"""SIM / DIN / DIEN recipe: user-behaviour sequences on Amazon Reviews, AUC."""

import common.cpu_env  # noqa: F401  (before torch: see common/cpu_env.py)
