"""See chain/consensus/*.py module docstrings."""
