"""NCF (NeuMF) recipe: MovieLens implicit feedback, HR@10 / NDCG@10."""

import common.cpu_env  # noqa: F401  (before torch: see common/cpu_env.py)
