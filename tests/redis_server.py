"""A private ``redis-server`` for fault tests (restarts, lost data), on a free port of 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """``redis-server`` owned by a test. With ``aof_dir`` an append-only file fsynced on every write survives a
    restart (``stop`` is a clean SIGTERM); without, a restart comes back empty (``stop`` kills it: a failover, a
    lost node)."""

    def __init__(self, aof_dir: Path | None = None) -> None:
        self.aof_dir = aof_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"]
        if self.aof_dir is not None:
            args += ["--dir", str(self.aof_dir), "--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:  # not listening yet, or still loading the AOF
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.aof_dir is not None:
            self.proc.send_signal(signal.SIGTERM)  # Redis shuts down cleanly (AOF flushed), as on a service restart
        else:
            self.proc.kill()  # no persistence either way: everything it held is gone
        self.proc.wait(20)
