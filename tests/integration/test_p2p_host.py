"""Host identity, Noise-only security and the version gate of the libp2p fixes (PROTOCOL §7.1)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import trio

from p2p import compat
from p2p.host import HostConfig, build_host, close_host, listen_multiaddrs, load_or_create_key, peer_id_of


def test_key_is_persistent_and_private(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path / "keys")
    mode = stat.S_IMODE((tmp_path / "keys" / "p2p.key").stat().st_mode)
    assert mode == 0o600
    again = load_or_create_key(tmp_path / "keys")
    assert peer_id_of(first) == peer_id_of(again)
    assert peer_id_of(load_or_create_key(tmp_path / "other")) != peer_id_of(first)


def test_a_foreign_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p2p.key").write_bytes(b"\x00" * 64)
    with pytest.raises(compat.LinguaChainError, match="not a LinguaChain p2p key"):
        load_or_create_key(tmp_path)


def test_version_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    compat.check_version()  # the pinned version is installed
    monkeypatch.setattr(compat, "installed_version", lambda: "0.9.0")
    with pytest.raises(compat.Libp2pVersionError, match=r"0\.8\.1"):
        compat.check_version()


def test_patches_are_installed() -> None:
    from libp2p.pubsub import pubsub

    compat.install()
    assert pubsub.Pubsub.write_msg.__qualname__.startswith("_fix_")
    assert pubsub.Pubsub.stream_handler.__qualname__.startswith("_fix_")
    assert pubsub.Pubsub.push_msg.__qualname__.startswith("_fix_")
    assert pubsub.SUBSCRIPTION_CHANNEL_SIZE == compat.SUBSCRIPTION_CHANNEL_SIZE
    from libp2p.pubsub import gossipsub

    assert gossipsub.GossipSub.send_recent_messages.__qualname__.startswith("_fix_")
    from libp2p.stream_muxer.yamux import yamux

    assert yamux._yamux_release_on_read() is False
    assert yamux.YamuxStream.__init__.__qualname__.startswith("_fix_")
    for module in (pubsub, gossipsub):
        assert module.maybe_consume_signed_record.__qualname__.startswith("_fix_")
        assert module.env_to_send_in_RPC.__qualname__.startswith("_fix_")
    assert pubsub.signature_validator.__qualname__.startswith("_fix_")  # type: ignore[attr-defined]


def test_only_noise_and_yamux_are_offered(tmp_path: Path) -> None:
    host = build_host(HostConfig(), load_or_create_key(tmp_path))
    upgrader = host.get_network().upgrader
    assert [str(p) for p in upgrader.security_multistream.transports] == ["/noise"]
    assert [str(p) for p in upgrader.muxer_multistream.transports] == ["/yamux/1.0.0"]


async def test_close_releases_the_port(tmp_path: Path) -> None:
    config = HostConfig()
    host = build_host(config, load_or_create_key(tmp_path))
    async with host.run(listen_multiaddrs(config)):
        addr = str(host.get_addrs()[0])
        await close_host(host)
    port = int(addr.split("/tcp/")[1].split("/")[0])
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", port))
    listener.close()
