"""DLRM recipe: Criteo click logs, AUC."""
