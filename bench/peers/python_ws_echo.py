"""A WebSocket echo server on Python `websockets` (asyncio), the other baseline.
Usage: python3 python_ws_echo.py PORT [deflate]"""

import asyncio
import signal
import sys

from websockets.asyncio.server import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main(port: int, deflate: bool) -> None:
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    compression = "deflate" if deflate else None
    async with serve(echo, "127.0.0.1", port, compression=compression, max_size=1 << 20, ping_interval=None):
        print(f"python websockets echo on 127.0.0.1:{port}{' (permessage-deflate)' if deflate else ''}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), len(sys.argv) > 2 and sys.argv[2] == "deflate"))
