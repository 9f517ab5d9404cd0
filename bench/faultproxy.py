"""A TCP proxy that can be told to refuse: the object store "goes away" without moto losing its state.

moto keeps its buckets in memory, so stopping it would lose the lake. Instead the service talks to this
proxy, which forwards bytes to moto; ``refuse()`` resets every open connection and every new one until
``restore()``, which is what a client sees when a store (or the network to it) is down.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host:target_port`` on an asyncio loop of its own thread."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._refusing = False
        self._open: set[asyncio.StreamWriter] = set()
        self.refused = 0  # connections reset while refusing: the evidence that the fault happened
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def refuse(self) -> None:
        """From now on, reset every connection (open ones included)."""
        self._loop.call_soon_threadsafe(self._start_refusing)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_refusing", False)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(server.sockets[0].getsockname()[1])
        ready.set()
        self._loop.run_forever()

    def _start_refusing(self) -> None:
        self._refusing = True
        for writer in list(self._open):
            self._reset(writer)

    def _reset(self, writer: asyncio.StreamWriter) -> None:
        """Close with RST (SO_LINGER 0), not a polite FIN: the peer sees "connection reset"."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        self._open.discard(writer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self.refused += 1
            self._reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            self._reset(writer)
            return
        self._open.update((writer, up_writer))
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self._open.discard(writer)
            writer.close()
