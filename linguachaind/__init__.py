"""linguachaind: the LinguaChain daemon (config, datadir, logging, node wiring, services, RPC server)."""

__version__ = "0.1.0"
