"""The floating cluster address (ngt/daemon/vip.py): added and announced, removed, in a network namespace of
the test's own (root only), and the gratuitous ARP frame's layout."""

import asyncio
import os
import socket
import subprocess
import sys
import uuid

import pytest

from ngt.daemon.vip import FloatingAddress, gratuitous_arp


def test_the_gratuitous_arp_frame_announces_the_vip_from_the_vip():
    mac = bytes.fromhex("020000000001")
    frame = gratuitous_arp(mac, "10.77.0.50")
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac and frame[12:14] == b"\x08\x06"
    arp = frame[14:]
    assert arp[6:8] == b"\x00\x01"  # a request, as arping -U sends
    assert arp[8:14] == mac and arp[14:18] == socket.inet_aton("10.77.0.50") == arp[24:28]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a network namespace")
def test_the_vip_is_added_announced_and_removed_in_a_namespace():
    namespace = f"fct-vip-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
                       check=True)
        for end in ("eth0", "eth1"):
            subprocess.run(["ip", "-n", namespace, "link", "set", end, "up"], check=True)
        script = ("import asyncio\nfrom ngt.daemon.vip import FloatingAddress\n"
                  "async def main():\n    floating = FloatingAddress('10.77.0.50', 'eth0')\n"
                  "    await floating.add()\n    await asyncio.sleep(1.2)\nasyncio.run(main())\n")
        subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", script], check=True, cwd=os.getcwd(),
                       env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=30)
        shown = subprocess.run(["ip", "-n", namespace, "-4", "address", "show", "dev", "eth0"], capture_output=True,
                               text=True).stdout
        assert "10.77.0.50/32" in shown
        removing = ("import asyncio\nfrom ngt.daemon.vip import FloatingAddress\n"
                    "asyncio.run(FloatingAddress('10.77.0.50', 'eth0').remove())\n"
                    "asyncio.run(FloatingAddress('10.77.0.50', 'eth0').remove())\n")  # twice: nothing to do
        subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", removing], check=True,
                       env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=30)
        shown = subprocess.run(["ip", "-n", namespace, "-4", "address", "show", "dev", "eth0"], capture_output=True,
                               text=True).stdout
        assert "10.77.0.50" not in shown
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)


def test_floating_address_names_itself():
    assert str(FloatingAddress("10.77.0.50", "eth0")) == "10.77.0.50/32 on eth0"
    assert asyncio.iscoroutinefunction(FloatingAddress.add)
