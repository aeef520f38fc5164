"""A TCP proxy on loopback that a test can cut and restore ("the database went away"), or
stall and recover ("the database hangs": connections are accepted, nothing is forwarded)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stop = False
        self._stalled = threading.Event()
        self.held = 0
        """How many times a stall held something back (a new connection, or data): a test
        waits for it to grow to know a client is caught in the stall."""
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()
                continue
            if self._stalled.is_set():  # accepted, never answered
                with self._lock:
                    self._sockets.add(client)
                    self.held += 1
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self._stalled.is_set():
                    with self._lock:
                        self.held += 1
                while self._stalled.is_set() and source.fileno() != -1:
                    time.sleep(0.02)  # hold the data: the other side waits forever
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self._open.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._open.set()

    def stall(self) -> None:
        """Keep every connection open but forward nothing; accept new ones and never
        answer them."""
        self._stalled.set()

    def recover(self) -> None:
        """End a stall: the stalled connections are dropped, new ones work again."""
        self.cut()
        self._stalled.clear()
        self._open.set()

    def close(self) -> None:
        self._stop = True
        self.cut()
        self._listener.close()


@contextmanager
def tcp_proxy(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
