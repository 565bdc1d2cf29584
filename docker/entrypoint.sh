#!/bin/sh
# Container entrypoint of a testnet node (docker/docker-compose.yml, docker/README.md).
#   (no arguments)  run this node: wait for the datadir made by the `init` service, resolve the other
#                   nodes' service names (peers.json in /shared) into --bootstrap addresses, then
#                   `exec linguachaind start` (under tini, so `docker stop` gives an ordered shutdown)
#   init            the one-shot `init` service: fresh validator keys, one genesis, every datadir
#                   (/nodes/nodeK), see /usr/local/lib/linguachain/testnet_init.py; idempotent
#   anything else   exec'd as is, e.g. `linguachain-cli --datadir /data status`
# Environment: NODES (number of genesis validators), NETWORK (devnet preset: 1 s slots; or testnet),
# CHAIN_ID, TRAIN_DATA (node:PATH,... for init), LC_DATA (/data), LC_SHARED (/shared).
set -eu
DATA="${LC_DATA:-/data}"
SHARED="${LC_SHARED:-/shared}"

if [ "${1:-}" = "init" ]; then
    shift
    exec python3 /usr/local/lib/linguachain/testnet_init.py --root /nodes --shared "$SHARED" \
        --nodes "${NODES:-4}" --network "${NETWORK:-devnet}" --chain-id "${CHAIN_ID:-lc-compose-1}" \
        --rpc-bind 0.0.0.0 --owner 1000:1000 --train-data "${TRAIN_DATA:-}" "$@"
fi
if [ "$#" -gt 0 ]; then
    exec "$@"
fi

i=0
until [ -s "$SHARED/genesis.json" ] && [ -f "$DATA/linguachain.toml" ]; do
    i=$((i + 1))
    if [ "$i" -gt 120 ]; then
        echo "error: $DATA is not initialised after 120 s (is the init service done? docker-compose logs init)" >&2
        exit 1
    fi
    sleep 1
done

# One --bootstrap per other node whose name resolves now (the others dial us; peers reconnect).
ME="$(hostname)"
BOOT="$(python3 - "$SHARED/peers.json" "$ME" <<'PY'
import json, socket, sys
for p in json.load(open(sys.argv[1])):
    if p["name"] == sys.argv[2]:
        continue
    try:
        ip = socket.gethostbyname(p["host"])
    except OSError:
        continue
    print(f"--bootstrap /ip4/{ip}/tcp/{p['port']}/p2p/{p['peer_id']}")
PY
)"
# shellcheck disable=SC2086
exec linguachaind start --datadir "$DATA" $BOOT
