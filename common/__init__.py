"""Code shared by the NCF, DLRM and SIM recipes. Imports no recipe."""
