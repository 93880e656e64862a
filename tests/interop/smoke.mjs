// js-libp2p smoke test against a Flotilla node. Usage: node smoke.mjs <multiaddr> [topic]
// Prints `A_PEER <id>` / `B_PEER <id>` for run.sh, exits non-zero on the first failure.
import './polyfill.mjs' // must come first: imports are evaluated in order
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'

const [target, topic = 'flotilla/interop'] = process.argv.slice(2)
if (!target) { console.error('usage: node smoke.mjs <multiaddr> [topic]'); process.exit(2) }
const log = (...a) => console.log('[js]', ...a)
const fail = (msg) => { console.error('[js] FAIL:', msg); process.exit(1) }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
async function until (what, ms, f) {
  const end = Date.now() + ms
  while (Date.now() < end) {
    const v = await f()
    if (v) return v
    await sleep(100)
  }
  fail(`timed out waiting for ${what}`)
}

const makeNode = () => createLibp2p({
  addresses: { listen: [] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({ emitSelf: false, allowPublishToZeroTopicPeers: false })
  }
})

const ma = multiaddr(target)

// 1. Dial, ping, identify.
const a = await makeNode()
console.log(`A_PEER ${a.peerId}`)
const conn = await a.dial(ma)
const rust = conn.remotePeer
log('connected to', rust.toString())
const rtt = await a.services.ping.ping(ma)
log(`ping rtt ${rtt} ms`)
const info = await until('identify', 5000, async () => {
  try { const p = await a.peerStore.get(rust); return p.protocols.length > 0 ? p : null } catch { return null }
})
const agent = new TextDecoder().decode(info.metadata.get('AgentVersion') ?? new Uint8Array())
const protoVersion = new TextDecoder().decode(info.metadata.get('ProtocolVersion') ?? new Uint8Array())
log('agent', agent, 'protocol version', protoVersion)
log('protocols', info.protocols.join(' '))
if (!agent.startsWith('flotilla/')) fail(`agent ${agent}`)
for (const p of ['/ipfs/id/1.0.0', '/ipfs/ping/1.0.0', '/meshsub/1.1.0', '/flotilla/kad/1.0.0', '/flotilla/req/1.0.0']) {
  if (!info.protocols.includes(p)) fail(`protocol ${p} missing`)
}

// 2. Garbage on the topic: the Rust node rejects it, penalises us, then drops and blocks us.
a.services.pubsub.subscribe(topic)
await until('the Rust node in the topic', 10000, () => a.services.pubsub.getSubscribers(topic).some((p) => p.equals(rust)))
let dropped = false
a.addEventListener('peer:disconnect', (e) => { if (e.detail.equals(rust)) dropped = true })
// The node bans after 3 rejects (or earlier once our score is below its graylist threshold;
// a graylisted peer's messages are ignored, so send a few more in case one was dropped).
for (let i = 0; i < 6 && !dropped; i++) {
  try {
    const r = await a.services.pubsub.publish(topic, Uint8Array.from([0xff, 0x00, i, 0x67, 0x61, 0x72, 0x62]))
    log(`garbage ${i} sent to ${r.recipients.length} peer(s)`)
  } catch (e) { log(`garbage ${i} not sent: ${e.message}`) }
  await sleep(300)
}
await until('the Rust node to drop us', 10000, () => dropped)
log('disconnected by the Rust node after garbage')
let pingedAgain = false
try { await a.dial(ma); await sleep(300); await a.services.ping.ping(ma); pingedAgain = true } catch (e) { log('redial refused:', e.message) }
if (pingedAgain) fail('banned peer could ping again')
await a.stop()

// 3. The Rust node keeps working: a fresh peer connects, pings and gets a valid message through.
const b = await makeNode()
console.log(`B_PEER ${b.peerId}`)
await b.dial(ma)
log(`second peer ping rtt ${await b.services.ping.ping(ma)} ms`)
b.services.pubsub.subscribe(topic)
await until('the Rust node in the topic (second peer)', 10000, () => b.services.pubsub.getSubscribers(topic).some((p) => p.equals(rust)))
const body = JSON.stringify({ kind: 'hello', sent_ms: Date.now(), body: { from: 'js-libp2p' } })
const envelope = new Uint8Array([1, ...new TextEncoder().encode(body)])
const res = await b.services.pubsub.publish(topic, envelope)
log('valid envelope published to', res.recipients.length, 'peer(s)')
await sleep(500)
await b.stop()
log('OK')
process.exit(0)
