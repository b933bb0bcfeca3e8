"""Customization media built per second: in process with pycdlib (what the create task does) against
`genisoimage` on the same files.

    .venv/bin/python bench/customization_media.py [--seconds 2]

For each datasource (ConfigDrive, NoCloud, Sysprep), the files of one VM's media (a 2 KiB cloud-config or
answer file, its metadata, two NICs, one static) are built into an ISO over and over for the given time:
in process into memory, in process and written to a file, and by `genisoimage -J -R` from a directory
holding the same files (a process per ISO, as a console without pycdlib would run it). Prints a table;
exits 0 unless the benchmark itself could not run. Touches nothing outside a temporary directory."""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCRATCH = Path(tempfile.mkdtemp(prefix="facet-bench-media-"))
os.environ.setdefault("FACET_DATA_DIR", str(SCRATCH / "data"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django  # noqa: E402  (the settings above must be in place first)

django.setup()

from console.models import Network, Nic  # noqa: E402
from customization.services import media, sysprep  # noqa: E402

CLOUD_CONFIG = "#cloud-config\npackages: [nginx, git]\nruncmd:\n" + "".join(
    f"  - echo step {i} >> /var/log/first-boot.log\n" for i in range(40))


def one_vm() -> media.Instance:
    lan = Network(name="lan", cidr="10.0.0.0/24", gateway="10.0.0.1", dns_servers="10.0.0.53")
    nics = [Nic(index=0, network=lan, mac="52:54:00:00:00:01", ip="10.0.0.100"),
            Nic(index=1, network=lan, mac="52:54:00:00:00:02")]
    return media.Instance(uuid="6c0f3c43-3bd5-4c4b-9d42-2a8e6d1c2f10", name="web-1", hostname="web-1",
                          key_values={"role": "web"}, nics=nics,
                          phone_home_url="https://console.example/customization/phone-home/TOKEN/")


def per_second(build: Callable[[], object], seconds: float) -> float:
    build()  # warm-up
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        build()
        count += 1
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    seconds = parser.parse_args().seconds
    genisoimage = shutil.which("genisoimage")
    answers = sysprep.generate(sysprep.Answers(organization="Bench", first_logon_commands=["cmd /c echo 1"] * 20))
    print(f"Customization media per second, {seconds:.0f} s per cell; Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'datasource':<13} {'files':>5} {'ISO KiB':>8} {'pycdlib mem/s':>14} {'pycdlib file/s':>15} "
          f"{'genisoimage/s':>14} {'speed-up':>9}")
    try:
        for datasource in ("config-drive", "nocloud", "sysprep"):
            content = answers if datasource == "sysprep" else CLOUD_CONFIG
            files = media.media_files(datasource, content, one_vm())
            iso = SCRATCH / f"{datasource}.iso"
            in_memory = per_second(lambda: media.build_iso(datasource, files), seconds)  # noqa: B023
            to_file = per_second(lambda: iso.write_bytes(media.build_iso(datasource, files)), seconds)  # noqa: B023
            external = per_second(_genisoimage(genisoimage, datasource, files), seconds) if genisoimage else 0.0
            speed_up = f"{to_file / external:8.1f}x" if external else "       —"
            print(f"{datasource:<13} {len(files):>5} {iso.stat().st_size / 1024:>8.0f} {in_memory:>14.0f} "
                  f"{to_file:>15.0f} {external:>14.0f} {speed_up}")
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    if not genisoimage:
        print("genisoimage is not installed (apt-get install genisoimage): its column is empty")
    print("speed-up: pycdlib written to a file against genisoimage writing the same ISO to a file")
    return 0


def _genisoimage(program: str, datasource: str, files: dict[str, bytes]) -> Callable[[], object]:
    tree = SCRATCH / f"{datasource}-tree"
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    command = [program, "-quiet", "-J", "-R", "-V", media.LABELS[datasource], "-o", str(SCRATCH / "g.iso"), str(tree)]
    return lambda: subprocess.run(command, check=True)


if __name__ == "__main__":
    sys.exit(main())
