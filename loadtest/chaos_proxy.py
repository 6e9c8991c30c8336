"""A TCP proxy between some stage instances and the Kafka broker that can partition them from it.

The local stack's broker has a listener advertised at the proxy's port (deploy/local/stack.sh, PROXIED), so a
client bootstrapped at the proxy reaches the broker only through it, for every connection its metadata names.

A partition is a black hole, not a reset: the proxy stops reading from both sides of every connection and
holds new connections without dialling the broker. Nothing is closed, so the client sees what a lost route
looks like (requests time out, heartbeats stop, the group evicts the member after its session timeout) rather
than the quick "connection refused" a stopped broker gives. Bytes already in flight sit in the kernel buffers
and move on when the partition heals, as TCP would retransmit them.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Optional, Tuple


class PartitionProxy(threading.Thread):
    def __init__(self, listen: Tuple[str, int], upstream: Tuple[str, int]):
        super().__init__(daemon=True)
        self.listen, self.upstream = listen, upstream
        self.loop = asyncio.new_event_loop()
        self.open_gate: Optional[asyncio.Event] = None
        self.ready = threading.Event()
        self.connections = 0

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.open_gate = asyncio.Event()
        self.open_gate.set()
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, *self.listen))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()

    def start_and_wait(self) -> "PartitionProxy":
        self.start()
        if not self.ready.wait(10):
            raise RuntimeError(f"partition proxy could not listen on {self.listen}")
        return self

    def partition(self) -> None:
        self.loop.call_soon_threadsafe(self.open_gate.clear)

    def heal(self) -> None:
        self.loop.call_soon_threadsafe(self.open_gate.set)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self.open_gate.wait()  # a connection made during a partition waits for the route to come back
        try:
            broker_r, broker_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pump(client_r, broker_w), self._pump(broker_r, client_w))

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self.open_gate.wait()
                data = await src.read(65536)
                if not data:
                    break
                # Read before the partition began: held here until it heals, as the network would.
                await self.open_gate.wait()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
