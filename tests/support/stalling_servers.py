"""FHIR servers on 127.0.0.1 that misbehave in time: one never answers, one trickles its headers.

Both are real sockets, so the client's own timeouts, connection handling and deadline timers are
what is exercised, not a mock of them.
"""

from __future__ import annotations

import socket
import threading
import time


class HangingServer:
    """Accepts every connection, reads the request, and never answers until closed."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.base = f"http://127.0.0.1:{self._listener.getsockname()[1]}/fhir"
        self.accepted = 0
        self.connected = threading.Event()  # set at the first accepted connection
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections.append(connection)
                self.accepted += 1
            self.connected.set()

    def close(self) -> None:
        """Stop listening and drop every connection held."""
        self._closed = True
        self._listener.close()
        with self._lock:
            for connection in self._connections:
                connection.close()


class HeaderTricklingServer:
    """Answers with a status line, then one header byte every `interval` seconds for up to `duration`.

    Every socket read is quick, so no read timeout trips; only a deadline on the whole exchange ends
    it. `client_left_early` is set when the client hung up before the trickle's end.
    """

    def __init__(self, interval: float = 0.05, duration: float = 20.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self._listener.getsockname()[1]}/fhir"
        self.interval = interval
        self.duration = duration
        self.client_left_early = threading.Event()
        threading.Thread(target=self._serve_one, daemon=True).start()

    def _serve_one(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            ends_at = time.monotonic() + self.duration
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while time.monotonic() < ends_at:
                    connection.sendall(b"a")
                    time.sleep(self.interval)
            except OSError:
                self.client_left_early.set()
                return
            # the trickle ran its course: hang up without finishing the headers

    def close(self) -> None:
        """Stop listening."""
        self._listener.close()
