"""Real servers for the end-to-end tests: a private ``redis-server`` on a
free port, the portable gateway component under ``wasmtime serve`` (as
tests/common/gateway.rs starts it), HS256 tokens, and a plain-HTTP SSE
reader that sees what a browser would.

The gateway needs ``WASMTIME`` and ``SSE_GATEWAY_WASM`` (scripts/test-python.sh
sets both); without them the e2e tests fail with a message saying so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import redis

REPO = Path(__file__).resolve().parents[3]
LOG_DIR = REPO / "target" / "python-tests"
SECRET = "python-producer-e2e-secret-0123456789abcdef-0123456789"
START_TIMEOUT = 120.0


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, ready, timeout: float, proc: Optional[subprocess.Popen] = None, log: Optional[Path] = None) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout}s:\n{tail(log)}")
        time.sleep(0.05)


def tail(log: Optional[Path], n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:] if log and log.exists() else ""


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """A ``redis-server`` of our own, killed at the end."""

    def __init__(self, extra: Tuple[str, ...] = (), port: Optional[int] = None, workdir: Optional[str] = None) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log = LOG_DIR / f"redis-{self.port}.log"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", workdir or tempfile.gettempdir(), *extra],
            stdin=subprocess.DEVNULL, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )
        wait_for(f"redis-server on {self.port}", self.ping, 15, self.proc, self.log)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> "redis.Redis[bytes]":
        return redis.Redis(port=self.port)

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        stop(self.proc)


class Gateway:
    """The portable component under ``wasmtime serve``, with the flags
    tests/common/gateway.rs uses; its log is printed when it fails to start."""

    def __init__(self, redis_url: str, env: Optional[Dict[str, str]] = None) -> None:
        wasmtime, wasm = os.environ.get("WASMTIME"), os.environ.get("SSE_GATEWAY_WASM")
        if not wasmtime or not wasm:
            pytest.fail("set WASMTIME and SSE_GATEWAY_WASM (scripts/test-python.sh does)", pytrace=False)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = LOG_DIR / f"gateway-{self.port}.log"
        settings = {"REDIS_URL": redis_url, "JWT_SECRET": SECRET, **(env or {})}
        cmd = [wasmtime, "serve", "-S", "cli", "-S", "inherit-network"]
        for k, v in settings.items():
            cmd += ["--env", f"{k}={v}"]
        cmd += ["--addr", f"127.0.0.1:{self.port}", wasm]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        wait_for(f"wasmtime serve on {self.port}", self._accepts, START_TIMEOUT, self.proc, self.log)

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None) -> Tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def post_event(self, path: str, body: bytes) -> Tuple[int, bytes]:
        """A publish through the gateway's own POST route, as a service."""
        return self.request("POST", path, body, {"Authorization": f"Bearer {token('producer', 'service')}"})

    def stream(self, path: str, user: str, last_event_id: Optional[str] = None) -> "SseStream":
        return SseStream(self.port, path, user, last_event_id)

    def stop(self) -> None:
        stop(self.proc)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub: str, role: str = "user", ttl: int = 3600) -> str:
    """An HS256 JWT signed with the gateway's secret (RFC 7519, by hand)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"sub": sub, "role": role, "exp": int(time.time()) + ttl}).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


@dataclass
class SseEvent:
    """One dispatched SSE event, as a browser's parser would build it."""

    data: str
    id: Optional[str] = None
    event: str = "message"


class SseStream:
    """A ``text/event-stream`` read line by line over plain HTTP/1.1."""

    def __init__(self, port: int, path: str, user: str, last_event_id: Optional[str], timeout: float = 10) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        headers = {"Authorization": f"Bearer {token(user)}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise AssertionError(f"GET {path}: {self.resp.status} {self.resp.read()!r}")
        assert self.resp.getheader("content-type", "").startswith("text/event-stream")

    def next(self) -> Optional[SseEvent]:
        """The next event with data (comments and bare ``retry:`` blocks are
        skipped), or None when the body ended."""
        data: List[str] = []
        fields: Dict[str, str] = {}
        while True:
            line = self.resp.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text == "":
                if data:
                    return SseEvent("\n".join(data), fields.get("id"), fields.get("event", "message"))
                fields = {}
                continue
            if text.startswith(":"):
                continue
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value

    def take(self, n: int) -> List[SseEvent]:
        out = []
        for _ in range(n):
            ev = self.next()
            assert ev is not None, f"stream ended after {out}"
            out.append(ev)
        return out

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed", pytrace=False)
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(redis_server: RedisServer) -> Iterator[Gateway]:
    gw = Gateway(redis_server.url)
    yield gw
    gw.stop()


def new_id(prefix: str = "py") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def put_execution(client: "redis.Redis[bytes]", execution_id: str, user: str, status: str = "running", prefix: str = "exec:") -> None:
    """The record the API writes (``exec:{id}``): owner, status, time."""
    client.hset(f"{prefix}{execution_id}", mapping={
        "user_id": user, "status": status, "updated_at": "2026-01-01T00:00:00Z",
    })
