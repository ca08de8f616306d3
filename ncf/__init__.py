"""NCF (NeuMF) recipe: MovieLens implicit feedback, HR@10 / NDCG@10."""
