"""The network layer (PROTOCOL §7): libp2p host, gossip, request-response, sync, blobs, peer scores.

Owns everything between the node and py-libp2p 0.8.1; the node starts one `p2p.service.P2PService`
and plugs its checks and stores in through `p2p.interfaces`. Must not: import the daemon, training
or the CLI (ARCHITECTURE §3). See docs/networking.md.
"""
