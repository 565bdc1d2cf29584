"""See chain/state/*.py module docstrings."""
