"""linguachain-cli: the command-line JSON-RPC client with a local encrypted wallet (docs/cli.md).

Must stay light: no trio, LevelDB, libp2p or torch anywhere under this package.
"""
