"""The daemon's JSON-RPC 2.0 server over HTTP (ARCHITECTURE.md §5): errors, HTTP, dispatch, methods."""
