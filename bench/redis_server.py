"""A throwaway redis-server on a free loopback port, for the benchmarks that need a real Redis.

Benchmarks do not import from tests/, so this is their own copy of the fixture's idea: no
persistence, its files under ``workdir``, stopped by the caller (``proc.terminate()``).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

__all__ = ["start_redis"]


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """(process, ``redis://`` URL) of a redis-server that is accepting connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*args, "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")
