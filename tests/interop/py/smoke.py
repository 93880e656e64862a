"""py-libp2p smoke test against a Flotilla node: python smoke.py <multiaddr> [topic]

The Python twin of ../smoke.mjs. Peer A (Ed25519, TCP + Noise + Yamux) dials the node,
pings it, reads its protocols through identify, subscribes to the topic and publishes
garbage until the node drops it; a redial must not get a ping through. Then a fresh peer B
connects, pings and publishes a valid envelope. Prints `A_PEER <id>` / `B_PEER <id>` for
run_py.sh, which checks the node's side (PENALISED / BANNED / MESSAGE lines); exits
non-zero on the first failure here. LIBP2P_DEBUG=DEBUG (py-libp2p's own variable) shows its
logs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import asynccontextmanager

import multiaddr
import trio

from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.host.ping import PingService
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL_ID
from libp2p.identity.identify.identify import parse_identify_response
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID as MESHSUB_V10
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11 as MESHSUB_V11
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import read_length_prefixed_protobuf

# The node's protocols (src/p2p/node.rs); smoke.mjs checks the same list.
EXPECTED_PROTOCOLS = [
    "/ipfs/id/1.0.0",
    "/ipfs/ping/1.0.0",
    "/meshsub/1.1.0",
    "/flotilla/kad/1.0.0",
    "/flotilla/req/1.0.0",
]


def log(*a: object) -> None:
    print("[py]", *a, flush=True)


class Fail(Exception):
    pass


async def until(what: str, seconds: float, f):
    """Poll f() (sync or async) every 100 ms until it returns a truthy value."""
    with trio.move_on_after(seconds):
        while True:
            v = f()
            if hasattr(v, "__await__"):
                v = await v
            if v:
                return v
            await trio.sleep(0.1)
    raise Fail(f"timed out waiting for {what}")


@asynccontextmanager
async def make_peer(name: str, rust: PeerInfo):
    """A host with a fresh Ed25519 identity, TCP + Noise + Yamux only, and GossipSub v1.1.

    The Flotilla node is a gossipsub *direct peer*: py-libp2p then sends every message it
    publishes on the topic to it, mesh or not. Without that, the first reject makes the
    node PRUNE us, py-libp2p drops it from its mesh and has nobody to publish the next
    garbage to (js-libp2p's flood publishing does the same job in smoke.mjs).
    """
    key_pair = create_new_key_pair()
    host = new_host(
        key_pair=key_pair,
        sec_opt={
            NOISE_PROTOCOL_ID: NoiseTransport(
                key_pair, noise_privkey=create_new_x25519_key_pair().private_key
            )
        },
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
    )
    gossipsub = GossipSub(
        protocols=[MESHSUB_V11, MESHSUB_V10],
        degree=6,
        degree_low=4,
        degree_high=12,
        direct_peers=[rust],
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        direct_connect_initial_delay=3600,  # we dial the node ourselves
        direct_connect_interval=3600,
    )
    pubsub = Pubsub(host, gossipsub)
    print(f"{name}_PEER {host.get_id()}", flush=True)
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with host.run(listen_addrs=listen):
        async with background_trio_service(pubsub), background_trio_service(gossipsub):
            await pubsub.wait_until_ready()
            yield host, pubsub


async def ping(host, peer) -> int:
    with trio.fail_after(10):
        rtts = await PingService(host).ping(peer, ping_amt=1)
    return rtts[0]


async def identify(host, peer):
    with trio.fail_after(10):
        stream = await host.new_stream(peer, [IDENTIFY_PROTOCOL_ID])
        raw = await read_length_prefixed_protobuf(stream, True)
        await stream.close()
    return parse_identify_response(raw)


def connected(host, peer) -> bool:
    return bool(host.get_network().get_connections(peer))


async def run(target: str, topic: str) -> None:
    info = info_from_p2p_addr(multiaddr.Multiaddr(target))
    rust = info.peer_id

    # 1. Dial, ping, identify.
    async with make_peer("A", info) as (a, pubsub):
        with trio.fail_after(10):
            await a.connect(info)
        log("connected to", rust)
        log(f"ping rtt {await ping(a, rust)} ms")
        idmsg = await identify(a, rust)
        protocols = list(idmsg.protocols)
        log("agent", idmsg.agent_version, "protocol version", idmsg.protocol_version)
        log("protocols", " ".join(sorted(protocols)))
        if not idmsg.agent_version.startswith("flotilla/"):
            raise Fail(f"agent {idmsg.agent_version}")
        for p in EXPECTED_PROTOCOLS:
            if p not in protocols:
                raise Fail(f"protocol {p} missing")

        # 2. Garbage on the topic: the node rejects it, penalises us, then drops and
        # blocks us. It bans after 3 rejects (or earlier once our score is below its
        # graylist threshold; a graylisted peer's messages are ignored, so send a few more
        # in case one was dropped).
        await pubsub.subscribe(topic)
        await pubsub.wait_for_subscription(rust, topic, timeout=10)
        for i in range(6):
            if not connected(a, rust):
                break
            await pubsub.publish(topic, bytes([0xFF, 0x00, i]) + b"garb")
            log(f"garbage {i} sent")
            await trio.sleep(0.3)
        await until("the Rust node to drop us", 10, lambda: not connected(a, rust))
        log("disconnected by the Rust node after garbage")
        pinged_again = False
        try:
            with trio.fail_after(5):
                await a.connect(info)
                await trio.sleep(0.3)
                await ping(a, rust)
                pinged_again = True
        except Exception as e:  # noqa: BLE001 - any failure is the expected outcome
            log("redial refused:", type(e).__name__, str(e)[:120])
        if pinged_again:
            raise Fail("banned peer could ping again")

    # 3. The node keeps working: a fresh peer connects, pings and gets a valid message in.
    async with make_peer("B", info) as (b, pubsub):
        with trio.fail_after(10):
            await b.connect(info)
        log(f"second peer ping rtt {await ping(b, rust)} ms")
        await pubsub.subscribe(topic)
        await pubsub.wait_for_subscription(rust, topic, timeout=10)
        body = json.dumps(
            {"kind": "hello", "sent_ms": int(time.time() * 1000), "body": {"from": "py-libp2p"}}
        )
        await pubsub.publish(topic, b"\x01" + body.encode())
        log("valid envelope published")
        await trio.sleep(0.5)


def leaves(e: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) trio nursery exception groups."""
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in leaves(sub)]
    return [e]


def main() -> None:
    if len(sys.argv) < 2:
        print("usage: python smoke.py <multiaddr> [topic]", file=sys.stderr)
        sys.exit(2)
    target = sys.argv[1]
    topic = sys.argv[2] if len(sys.argv) > 2 else "flotilla/interop"
    if not os.environ.get("LIBP2P_DEBUG"):
        # Without LIBP2P_DEBUG, py-libp2p's warnings reach stderr through logging's last
        # resort handler: expected ones here (its streams to the node failing once the node
        # drops peer A, GRAFTs from a direct peer ignored) would read as errors. Silence them.
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    code = 0
    try:
        trio.run(run, target, topic)
        log("OK")
    except BaseException as e:  # noqa: BLE001 - report anything, then exit non-zero
        for leaf in leaves(e):
            msg = str(leaf) if isinstance(leaf, Fail) else f"{type(leaf).__name__}: {leaf}"
            print("[py] FAIL:", msg, file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # py-libp2p may leave non-daemon threads behind (e.g. resource manager); do not wait.
    os._exit(code)


if __name__ == "__main__":
    main()
