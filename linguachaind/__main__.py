"""`python -m linguachaind` runs the `linguachaind` command."""

from linguachaind.main import main

main()
