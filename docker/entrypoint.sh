#!/bin/sh
# Container entrypoint of a testnet node (docker/docker-compose.yml).
#   NODE_INDEX      this node's index; node 0 is the bootstrap node and writes the shared genesis
#   NODES           number of genesis validators (one per node)
#   NETWORK         testnet (default) or devnet
#   P2P_PORT        libp2p TCP port inside the container (default 19333)
#   BOOTSTRAP_HOST  service name of the bootstrap node (default node0)
#   BOOTSTRAP_PORT  its libp2p port (default P2P_PORT)
# First start: `linguachaind init` with the shared genesis and the deterministic validator key of
# NODE_INDEX (a public test key: never for value). Every start: `linguachaind start` (exec, so the
# daemon gets SIGTERM from `docker stop` and shuts down in order).
set -eu
NODE_INDEX="${NODE_INDEX:-0}"
NODES="${NODES:-3}"
NETWORK="${NETWORK:-testnet}"
P2P_PORT="${P2P_PORT:-19333}"
BOOTSTRAP_HOST="${BOOTSTRAP_HOST:-node0}"
BOOTSTRAP_PORT="${BOOTSTRAP_PORT:-$P2P_PORT}"
DATA="${LC_DATA:-/data}"
SHARED="${LC_SHARED:-/shared}"

if [ "$#" -gt 0 ]; then
    exec "$@"    # e.g. `docker compose run node0 linguachain-cli --datadir /data status`
fi

wait_for() {  # wait_for FILE SECONDS
    i=0
    while [ ! -s "$1" ]; do
        i=$((i + 1))
        if [ "$i" -gt "$2" ]; then echo "error: $1 did not appear within $2 s" >&2; exit 1; fi
        sleep 1
    done
}

if [ "$NODE_INDEX" = "0" ] && [ ! -s "$SHARED/genesis.json" ]; then
    linguachaind make-genesis --network "$NETWORK" --validators "$NODES" \
        --out "$SHARED/genesis.json.tmp" --accounts-out "$SHARED/accounts.json"
    mv "$SHARED/genesis.json.tmp" "$SHARED/genesis.json"
fi
wait_for "$SHARED/genesis.json" 120

if [ ! -f "$DATA/linguachain.toml" ]; then
    linguachaind init --network "$NETWORK" --datadir "$DATA" --genesis "$SHARED/genesis.json" \
        --dev-validator "$NODE_INDEX" --listen "/ip4/0.0.0.0/tcp/$P2P_PORT"
fi

peer_id() {
    python -c "import sys; from pathlib import Path; from p2p.host import load_or_create_key, peer_id_of; print(peer_id_of(load_or_create_key(Path(sys.argv[1]))))" "$1"
}

BOOT=""
if [ "$NODE_INDEX" = "0" ]; then
    peer_id "$DATA/keys" > "$SHARED/node0.peerid.tmp" && mv "$SHARED/node0.peerid.tmp" "$SHARED/node0.peerid"
else
    wait_for "$SHARED/node0.peerid" 120
    ip="$(getent hosts "$BOOTSTRAP_HOST" | awk '{print $1}' | head -n 1)"
    if [ -z "$ip" ]; then echo "error: cannot resolve $BOOTSTRAP_HOST" >&2; exit 1; fi
    BOOT="--bootstrap /ip4/$ip/tcp/$BOOTSTRAP_PORT/p2p/$(cat "$SHARED/node0.peerid")"
fi

# shellcheck disable=SC2086
exec linguachaind start --datadir "$DATA" --listen "/ip4/0.0.0.0/tcp/$P2P_PORT" --validator $BOOT
