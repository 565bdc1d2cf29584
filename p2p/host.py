"""The libp2p host of a node: persistent identity, Noise-only TCP + yamux, limits (PROTOCOL §7.1).

Owns: loading or creating the node's libp2p key in its datadir (mode 0600, same peer id across
restarts), building a `BasicHost` that accepts nothing but Noise and yamux, explicit connection limits
and health monitoring, a cap on connections per source IP, refusing dials to banned peers (whoever
asks for them), listen and announce addresses, and a shutdown that really closes every
connection (LIBP2P-NOTES: leaving `host.run()` by cancellation leaks sockets). Must not: know about
gossip topics, chain objects or scoring (service.py wires those).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from chain.errors import LinguaChainError
from p2p import compat

compat.install()  # fail loudly on a libp2p other than the one the fixes were written for

import multiaddr  # noqa: E402
from libp2p import new_host  # noqa: E402
from libp2p.crypto.ed25519 import Ed25519PrivateKey  # noqa: E402
from libp2p.crypto.keys import KeyPair  # noqa: E402
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_pair  # noqa: E402
from libp2p.network.config import ConnectionConfig  # noqa: E402
from libp2p.network.exceptions import SwarmException  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr  # noqa: E402
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID  # noqa: E402
from libp2p.security.noise.transport import Transport as NoiseTransport  # noqa: E402
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID  # noqa: E402
from libp2p.stream_muxer.yamux.yamux import Yamux  # noqa: E402

log = logging.getLogger(__name__)

KEY_FILE: Final = "p2p.key"
_KEY_MAGIC: Final = b"LC-P2P-ED25519\x00\x01"


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Everything the host needs; the daemon fills it from `NodeConfig`."""

    listen_addrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    announce_addrs: tuple[str, ...] = ()
    max_connections: int = 64
    max_connections_per_peer: int = 2
    # One source address may hold at most this many connections, so fresh peer ids from one machine
    # cannot fill `max_connections` (bans are per peer id). Loopback is exempt unless `limit_loopback`
    # (devnets and tests run many nodes on 127.0.0.1).
    max_connections_per_ip: int = 8
    limit_loopback: bool = False
    dial_timeout_s: float = 5.0
    health_monitoring: bool = True
    health_check_interval_s: float = 2.0
    ping_timeout_s: float = 2.0
    enable_mdns: bool = False


def load_or_create_key(keys_dir: Path) -> Any:
    """The node's libp2p Ed25519 key pair from `keys_dir/p2p.key`, created (0600) if absent.

    A key file the group or other users can read is refused (chmod 600 fixes it): whoever holds it
    can impersonate the node's peer id."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = keys_dir / KEY_FILE
    if path.exists():
        data = path.read_bytes()
        if not data.startswith(_KEY_MAGIC) or len(data) != len(_KEY_MAGIC) + 32:
            raise LinguaChainError(f"{path}: not a LinguaChain p2p key file")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise LinguaChainError(
                f"{path} is readable by other users (mode {mode:03o}); run: chmod 600 {path}"
            )
        private = Ed25519PrivateKey.from_bytes(data[len(_KEY_MAGIC) :])
        return KeyPair(private, private.get_public_key())
    private = Ed25519PrivateKey.new()
    tmp = path.with_name(f".{KEY_FILE}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, _KEY_MAGIC + private.to_bytes())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    log.info("created a new p2p key at %s", path)
    return KeyPair(private, private.get_public_key())


def peer_id_of(key_pair: Any) -> str:
    return str(ID.from_pubkey(key_pair.public_key))


def build_host(config: HostConfig, key_pair: Any) -> Any:
    """A libp2p host with Noise as its only security transport and yamux as its only muxer."""
    security = {NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=new_x25519_pair().private_key)}
    muxers: dict[Any, Any] = {YAMUX_PROTOCOL_ID: Yamux}
    conn_config = ConnectionConfig(
        max_connections=config.max_connections,
        min_connections=0,
        low_watermark=0,
        high_watermark=config.max_connections,
        max_connections_per_peer=config.max_connections_per_peer,
        dial_timeout=config.dial_timeout_s,
        enable_health_monitoring=config.health_monitoring,
        health_initial_delay=config.health_check_interval_s,
        health_warmup_window=config.health_check_interval_s,
        health_check_interval=config.health_check_interval_s,
        ping_timeout=config.ping_timeout_s,
    )
    announce = [multiaddr.Multiaddr(a) for a in config.announce_addrs] or None
    host = new_host(
        key_pair=key_pair,
        sec_opt=security,
        muxer_opt=muxers,
        listen_addrs=[multiaddr.Multiaddr(a) for a in config.listen_addrs],
        enable_mDNS=config.enable_mdns,
        connection_config=conn_config,
        announce_addrs=announce,
    )
    # libp2p's auto-connector would redial every peer in the peerstore up to (low+high)/2
    # connections, banned and wrong-genesis peers included; p2p.peers decides whom to dial.
    auto_connector: Any = getattr(host.get_network(), "auto_connector")  # noqa: B009 - Swarm only

    async def _no_auto_connect(*args: Any, **kwargs: Any) -> None:
        await trio.lowlevel.checkpoint()

    auto_connector.maybe_connect = _no_auto_connect
    _limit_per_source(host, config.max_connections_per_ip, exempt_loopback=not config.limit_loopback)
    return host


def ip_of(addr: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address in a multiaddr (`/ip4/...` or `/ip6/...`), or None."""
    for proto in ("ip4", "ip6"):
        try:
            return ipaddress.ip_address(multiaddr.Multiaddr(str(addr)).value_for_protocol(proto))
        except Exception:
            continue
    return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def connection_ips(conn: Any) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The remote IPs of one libp2p connection (its real transport addresses)."""
    try:
        addrs = conn.get_transport_addresses()
    except Exception:
        return []
    return [ip for ip in (ip_of(a) for a in addrs) if ip is not None]


def peer_ips(host: Any, peer_id: Any) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for conn in host.get_network().get_connections(peer_id):
        out.extend(connection_ips(conn))
    return out


def _limit_per_source(host: Any, limit: int, *, exempt_loopback: bool) -> None:
    """Wrap the swarm's inbound connection gate: at most `limit` connections from one IP address."""
    network = host.get_network()
    gate = network.connection_gate
    allowed = gate.is_allowed

    async def is_allowed(remote_addr: Any) -> bool:
        if not await allowed(remote_addr):
            return False
        ip = ip_of(remote_addr)
        if ip is None or (exempt_loopback and ip.is_loopback):
            return True
        held = sum(
            connection_ips(c).count(ip) for conns in network.get_connections_map().values() for c in conns
        )
        if held >= limit:
            log.info("inbound connection from %s refused: %d connections from that address", ip, held)
            return False
        return True

    gate.is_allowed = is_allowed


def refuse_dials_to(host: Any, is_banned: Callable[[str], bool]) -> None:
    """Make every dial of the swarm (ours, the pubsub stream retry's, the health monitor's) refuse
    a banned peer: a ban stops our own dials too, not only the peer's (issue 12 finding 8)."""
    network = host.get_network()
    dial_peer, replacement = network.dial_peer, network.dial_peer_replacement

    async def gated_dial_peer(peer_id: Any) -> Any:
        if is_banned(str(peer_id)):
            raise SwarmException(f"peer {peer_id} is banned; not dialing it")
        return await dial_peer(peer_id)

    async def gated_replacement(peer_id: Any) -> Any:
        if is_banned(str(peer_id)):
            return None
        return await replacement(peer_id)

    network.dial_peer = gated_dial_peer
    network.dial_peer_replacement = gated_replacement


def listen_multiaddrs(config: HostConfig) -> list[Any]:
    return [multiaddr.Multiaddr(a) for a in config.listen_addrs]


def full_addrs(host: Any) -> list[str]:
    """This host's dialable addresses with `/p2p/<peer id>` (what peer exchange hands out)."""
    pid = str(host.get_id())
    out = []
    for a in host.get_addrs():
        s = str(a)
        out.append(s if "/p2p/" in s else f"{s}/p2p/{pid}")
    return out


def parse_peer_addr(addr: str) -> Any:
    """`PeerInfo` of a `/ip4/.../tcp/.../p2p/<id>` multiaddr; raises ValueError when malformed."""
    try:
        info: PeerInfo = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:
        raise ValueError(f"not a dialable peer address: {addr!r} ({exc})") from None
    return info


def peer_id_from_str(peer_id: str) -> Any:
    return ID.from_base58(peer_id)


async def close_host(host: Any, *, timeout_s: float = 5.0) -> None:
    """Close every connection, shielded from cancellation (LIBP2P-NOTES, upstream #1485).

    0.8.1 also leaves the TCP socket of a connection open when that connection's close already
    began under a cancelled scope (SwarmConn marks itself closed first, so swarm.close() skips it):
    we collect the sockets first and close whatever is still open afterwards."""
    sockets = _connection_sockets(host)
    with trio.CancelScope(shield=True):
        with trio.move_on_after(timeout_s):
            try:
                await host.close()
            except Exception:
                log.warning("host close failed", exc_info=True)
        leaked = 0
        for sock in sockets:
            if sock.fileno() != -1:
                leaked += 1
                sock.close()
        if leaked:
            log.debug("closed %d socket(s) libp2p left open", leaked)


def _connection_sockets(host: Any) -> list[Any]:
    out: list[Any] = []
    try:
        connections = host.get_network().connections
    except Exception:
        return out
    for conns in list(connections.values()):
        for conn in list(conns):
            obj = getattr(getattr(conn, "muxed_conn", None), "secured_conn", None)
            for _ in range(8):  # SecureSession -> Noise read-writer -> RawConnection -> TrioTCPStream
                if obj is None or hasattr(obj, "socket"):
                    break
                obj = next(
                    (getattr(obj, a) for a in ("conn", "read_writer", "stream") if hasattr(obj, a)), None
                )
            sock = getattr(obj, "socket", None)
            if sock is not None and hasattr(sock, "fileno"):
                out.append(sock)
    return out


def addrs_of_peer(host: Any, peer_id: Any) -> Sequence[str]:
    try:
        return [str(a) for a in host.get_peerstore().addrs(peer_id)]
    except Exception:
        return []
