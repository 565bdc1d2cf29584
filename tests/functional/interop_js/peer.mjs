// A js-libp2p peer for tests/functional/test_interop_js.py (issue 12 finding 9), configured only from
// docs/wire.md: TCP + Noise + yamux, gossipsub with StrictSign and message id = BLAKE2b-256(data).
// Usage: node peer.mjs <bootstrap multiaddr> <chain_id>
// Prints one JSON object per line (events); reads commands from stdin, one per line:
//   publish <topic suffix> <hex payload>      e.g. "publish tx 0a0b..."
import './polyfill.mjs' // first: evaluated before libp2p
import { createInterface } from 'node:readline'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { blake2b } from '@noble/hashes/blake2b'

const [bootstrap, chainId] = process.argv.slice(2)
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const topic = (name) => `/lc/${chainId}/${name}/1`

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({
      globalSignaturePolicy: 'StrictSign',
      msgIdFn: (msg) => blake2b(msg.data, { dkLen: 32 }),
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
    }),
  },
})

node.addEventListener('peer:connect', (e) => say({ event: 'connect', peer: e.detail.toString() }))
node.addEventListener('peer:disconnect', (e) => say({ event: 'disconnect', peer: e.detail.toString() }))
node.services.pubsub.addEventListener('message', (e) => {
  const name = e.detail.topic.split('/')[3]
  say({ event: 'message', topic: name, bytes: e.detail.data.length })
})
for (const name of ['tx', 'block', 'attest', 'vdf']) node.services.pubsub.subscribe(topic(name))

say({ event: 'started', peer: node.peerId.toString() })
try {
  await node.dial(multiaddr(bootstrap))
} catch (err) {
  say({ event: 'dial_failed', error: String(err) })
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  const [cmd, name, hex] = line.trim().split(/\s+/)
  if (cmd !== 'publish') continue
  try {
    const res = await node.services.pubsub.publish(topic(name), Buffer.from(hex, 'hex'))
    say({ event: 'published', topic: name, recipients: res.recipients.length })
  } catch (err) {
    say({ event: 'publish_failed', topic: name, error: String(err) })
  }
}
await node.stop()
