"""SIM / DIN / DIEN recipe: user-behaviour sequences on Amazon Reviews, AUC."""
