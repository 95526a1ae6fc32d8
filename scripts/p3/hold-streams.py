#!/usr/bin/env python3
"""Opens N notification streams against a gateway, waits until each has its
first bytes, prints how many opened, then holds them until stdin closes (or
a line arrives), and finally reports how many received the marker event.

    hold-streams.py HOST:PORT TOKEN N MARKER [BATCH]

BATCH connections are opened every 50 ms (default 64).

Used for the p3 memory baseline (docs/PERFORMANCE.md): the caller measures
the host's RSS while the streams are held and publishes MARKER.
"""
import asyncio
import sys


async def one(host, port, token, marker, opened, got):
    try:
        r, w = await asyncio.open_connection(host, port)
    except OSError:
        return
    w.write(
        f"GET /api/v1/events/notifications/stream HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    await w.drain()
    buf = b""
    first = True
    try:
        while True:
            chunk = await r.read(4096)
            if not chunk:
                return
            buf += chunk
            if first and b"retry:" in buf:
                first = False
                opened.append(1)
            if marker in buf:
                got.append(1)
                buf = b""
            buf = buf[-4096:]
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        w.close()


async def main():
    addr, token, n, marker = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 64
    host, port = addr.rsplit(":", 1)
    opened, got = [], []
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(host, int(port), token, marker, opened, got)))
        if i % batch == batch - 1:
            await asyncio.sleep(0.05)
    for _ in range(600):
        if len(opened) >= n:
            break
        await asyncio.sleep(0.1)
    print(f"opened {len(opened)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    await asyncio.sleep(1.0)
    print(f"received {len(got)}", flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


asyncio.run(main())
