"""Many simulated Guest Tools agents in one asyncio process (standard library only), for
bench/cluster_failover.py: each links over mutual TLS 1.3 to the cluster VIP with its own VM certificate,
sends a heartbeat every 2 s, and when its link ends (or 6 s pass without an acknowledgement) links again
after a short backoff, as the real agent does. Every half second it writes, to STATUS, how many are linked
and when each was last welcomed (wall-clock time).

    python bench/cluster_agents.py AGENTS.json STATUS VIP

AGENTS.json: {"ca": PEM path, "agents": [[vm uuid, certificate serial, PEM path of certificate and key]]}."""

import asyncio
import json
import os
import random
import ssl
import sys
import time

PORT, HEARTBEAT, SILENCE, CONNECTS_AT_ONCE = 2074, 2.0, 6.0, 50


class Agent:
    def __init__(self, vm_uuid: str, serial: str, pem: str, ca: str) -> None:
        self.vm_uuid, self.serial = vm_uuid, serial
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.load_verify_locations(ca)
        self.context.load_cert_chain(pem)
        self.linked = False
        self.welcomed_at = 0.0

    async def live(self, vip: str, gate: asyncio.Semaphore) -> None:
        backoff = 0.2
        while True:
            try:
                async with gate:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(vip, PORT, ssl=self.context, server_hostname=vip), 10)
                    writer.write(json.dumps({"id": "h", "type": "hello", "vm_uuid": self.vm_uuid,
                                             "certificate_serial": self.serial, "agent_version": "1.0.0",
                                             "os": "sim", "hostname": "sim", "ip_addresses": []}).encode() + b"\n")
                    answer = await asyncio.wait_for(self.first_answer(reader), 10)
                if answer.get("type") != "welcome":
                    raise ConnectionError(f"not welcomed: {answer}")
                self.linked, self.welcomed_at, backoff = True, time.time(), 0.2
                await self.beat(reader, writer)
            except (OSError, TimeoutError, ConnectionError, ValueError, ssl.SSLError):
                pass
            self.linked = False
            await asyncio.sleep(backoff * (1 + random.random()))
            backoff = min(backoff * 2, 2.0)

    @staticmethod
    async def first_answer(reader: asyncio.StreamReader) -> dict:
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("the service hung up")
            message = json.loads(line)
            if message.get("type") != "hello_request":
                return message

    async def beat(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = 0
        try:
            while True:
                number += 1
                writer.write(json.dumps({"id": f"b{number}", "type": "heartbeat"}).encode() + b"\n")
                deadline = time.monotonic() + SILENCE
                while True:  # until this heartbeat's acknowledgement
                    line = await asyncio.wait_for(reader.readline(), max(0.1, deadline - time.monotonic()))
                    if not line:
                        return
                    if json.loads(line).get("id") == f"b{number}":
                        break
                await asyncio.sleep(HEARTBEAT)
        finally:
            writer.close()


async def main(agents_file: str, status_file: str, vip: str) -> None:
    with open(agents_file) as handle:
        spec = json.load(handle)
    agents = [Agent(uuid, serial, pem, spec["ca"]) for uuid, serial, pem in spec["agents"]]
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    for agent in agents:
        asyncio.ensure_future(agent.live(vip, gate))
    while True:
        await asyncio.sleep(0.5)
        status = {"linked": sum(agent.linked for agent in agents), "total": len(agents),
                  "welcomed_at": [agent.welcomed_at for agent in agents]}
        with open(status_file + ".part", "w") as handle:
            json.dump(status, handle)
        os.replace(status_file + ".part", status_file)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
