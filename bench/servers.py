"""Servers under test as pinned subprocesses: the peers of bench/peers/ and Pushwire with compression on.

Every server runs under `taskset -c 0` (one worker, one core). `start()` waits until it answers
(GET /health for Pushwire, a TCP connect for the peers) and raises with the tail of its log
when it exits or does not answer — a benchmark never runs against a server that is not there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import harness as h

PEERS = {
    "websockets": "bench.peers.websockets_server",
    "picows": "bench.peers.picows_server",
    "socketio": "bench.peers.socketio_server",
    "litestar-ws": "bench.peers.litestar_ws_server",
}
LABELS = {
    "pushwire": "Pushwire",
    "socketio": "python-socketio (peer)",
    "websockets": "websockets broadcast() (limit)",
    "picows": "picows (generator ceiling)",
    "litestar-ws": "bare Litestar WebSocket route on uvicorn (Pushwire's stack, floor)",
    "signed-post": "bare Litestar signed POST (limit)",
}


class Proc:
    """A pinned server subprocess with `pid` and `port`; a context manager."""

    def __init__(
        self,
        name: str,
        module: str,
        *,
        env: dict[str, str] | None = None,
        deflate: bool = False,
        health: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.port = h.free_port()
        self.health = health
        self.cmd = ["taskset", "-c", str(h.SERVER_CPU), str(h.BIN / "python"), "-m", module, "--port", str(self.port)]
        if deflate:
            self.cmd.append("--deflate")
        self.env = {**os.environ, "PYTHONPATH": str(h.ROOT), **(env or {})}
        self.cwd = cwd or h.ROOT
        self.log_path = Path(tempfile.mkstemp(prefix=f"pwbench-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Proc:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child's log for its lifetime
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=h.raise_nofile,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} server did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        with contextlib.suppress(OSError):
            if self.health:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.health}", timeout=1) as r:
                    return r.status == 200
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> Proc:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def peer(name: str, deflate: bool = False) -> Proc:
    return Proc(name, PEERS[name], deflate=deflate)


def reference() -> Proc:
    """The push API's limit: a bare Litestar signed POST (bench/peers/signed_post_server.py), pinned like the rest."""
    return Proc("signed-post", "bench.peers.signed_post_server")


def pushwire_deflate(b: h.Backend) -> Proc:
    """Pushwire with permessage-deflate negotiated (bench/peers/pushwire_server.py), on the backend's env."""
    return Proc("pushwire-deflate", "bench.peers.pushwire_server", env=b.env, health="/health", cwd=b.workdir)


def peer_url(name: str, port: int, ctl: bool = False) -> str:
    if name == "socketio":
        return f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    return f"ws://127.0.0.1:{port}/{'ctl' if ctl else 'c'}"


def dialect(name: str) -> str:
    return {"socketio": "socketio", "pushwire": "pushwire", "litestar-ws": "pushwire"}.get(name, "plain")
