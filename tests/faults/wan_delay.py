"""A TCP relay that adds a fixed delay to every byte, for kernels without ``tc netem``.

The fault suite redirects (nftables ``redirect``) new connections to the other datacenter's
gateway ports to this relay inside a namespace; it reads the original destination
(``SO_ORIGINAL_DST``), dials it with a firewall mark the redirect rule skips, and passes every
chunk on ``--delay`` seconds after it arrived, in order, in both directions.

    python wan_delay.py --listen 0.0.0.0:8999 --delay 0.2 --mark 0x77
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct

SO_ORIGINAL_DST = 80


def original_dst(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack("!H", raw[2:4])[0]
    return socket.inet_ntoa(raw[4:8]), port


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    except (OSError, asyncio.CancelledError):
        sender.cancel()
    finally:
        writer.close()


async def handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, mark: int
) -> None:
    sock = writer.get_extra_info("socket")
    try:
        host, port = original_dst(sock)
        out = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        out.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        out.setblocking(False)
        await asyncio.get_running_loop().sock_connect(out, (host, port))
        up_reader, up_writer = await asyncio.open_connection(sock=out)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pump(reader, up_writer, delay), pump(up_reader, writer, delay))


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="0.0.0.0:8999")
    p.add_argument("--delay", type=float, default=0.2)
    p.add_argument("--mark", type=lambda s: int(s, 0), default=0x77)
    args = p.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.delay, args.mark), host, int(port))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
