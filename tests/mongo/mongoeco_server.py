"""Run a mongoeco server (a MongoDB wire-protocol server in Python) on a loopback port.

Started by ``tests/mongo/server.py`` with the interpreter of the mongoeco venv (Python >= 3.13),
never imported by the test suite. Prints ``ready <port>`` once it accepts connections, then
serves until killed. Usage: ``python mongoeco_server.py [port]`` (0 or none: any free port).
"""

import asyncio
import sys

from mongoeco.engines import MemoryEngine
from mongoeco.wire import AsyncMongoEcoProxyServer


async def main(port: int) -> None:
    server = AsyncMongoEcoProxyServer(engine=MemoryEngine(), host="127.0.0.1", port=port)
    address = await server.start()
    print(f"ready {address.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
