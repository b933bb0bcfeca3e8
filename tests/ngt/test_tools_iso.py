"""The tools ISO builder: one tree per thread reused across builds must never carry one VM's files into
another's image."""

import subprocess
import threading
from pathlib import Path

import pytest

from ngt.services import tools_iso


def names(image: bytes, tmp_path: Path) -> set[str]:
    iso = tmp_path / "t.iso"
    iso.write_bytes(image)
    listing = subprocess.run(["isoinfo", "-R", "-l", "-i", str(iso)], check=True, capture_output=True,
                             text=True).stdout
    return {line.split()[-1] for line in listing.splitlines() if line.startswith("-")}


def test_consecutive_builds_hold_only_their_own_files(tmp_path):
    first = tools_iso.build_iso({"config/a.txt": b"A" * 3000, "config/client.key": b"first key"})
    second = tools_iso.build_iso({"config/b.txt": b"B"})
    assert names(first, tmp_path) == {"a.txt", "client.key"}
    assert names(second, tmp_path) == {"b.txt"}
    assert b"first key" not in second


def test_a_new_ca_certificate_gets_a_new_tree(tmp_path):
    first = tools_iso.build_iso({"config/ca.pem": b"first CA", "config/ngt.json": b"{}"})
    second = tools_iso.build_iso({"config/ca.pem": b"second CA", "config/ngt.json": b"{}"})
    assert b"first CA" in first and b"second CA" not in first
    assert b"second CA" in second and b"first CA" not in second


def test_a_failed_build_does_not_poison_the_next(tmp_path):
    with pytest.raises(TypeError):
        tools_iso.build_iso({"config/a-good.txt": b"ok", "config/z-bad.txt": "not bytes"})  # fails after one add
    assert names(tools_iso.build_iso({"config/next.txt": b"n"}), tmp_path) == {"next.txt"}


def test_threads_build_at_the_same_time(tmp_path):
    images: dict[int, bytes] = {}

    def build(n: int) -> None:
        for _ in range(20):
            images[n] = tools_iso.build_iso({f"config/vm{n}.txt": str(n).encode()})

    threads = [threading.Thread(target=build, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, image in images.items():
        assert names(image, tmp_path) == {f"vm{n}.txt"}
