"""A deliberately bare HTTP/1.1 client over a socket, for what aiohttp's client won't do:
send a head and only part of a body, trickle bytes, or sit idle, and see what the server does
meanwhile. Every wait has a generous deadline: it bounds a hung test, it asserts no timing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson

DEADLINE = 60.0


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> object:
        return orjson.loads(self.body)


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_head(self, method: str, target: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: pipit.test"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def read_answer(self) -> RawAnswer:
        """The next answer (skipping none: a 1xx is returned like any other)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), DEADLINE)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in filter(None, header_lines):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), DEADLINE)
        return RawAnswer(int(status_line.split()[1]), headers, body)

    async def closed_by_server(self) -> bytes:
        """Waits until the server closes the connection; returns whatever it sent first."""
        received = b""
        async with asyncio.timeout(DEADLINE):
            while True:
                try:
                    chunk = await self.reader.read(65536)
                except ConnectionResetError:
                    return received
                if not chunk:
                    return received
                received += chunk

    def close(self) -> None:
        self.writer.close()
