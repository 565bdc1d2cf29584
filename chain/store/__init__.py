"""See chain/store/*.py module docstrings."""
