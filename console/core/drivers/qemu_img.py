"""qemu-img, as the libvirt driver runs it on the hypervisor host: full copies with progress, qcow2 overlays
and resizes."""

import re
import subprocess
import tempfile
from pathlib import Path

from . import files
from .base import DriverError, ProgressCallback

ERROR_TAIL_CHARS = 2000


def run(*arguments: str) -> None:
    result = subprocess.run(["qemu-img", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise DriverError(f"qemu-img {arguments[0]} failed: {result.stderr.strip() or result.stdout.strip()}")


def convert(source: Path, target: Path, progress: ProgressCallback) -> None:
    """A full, standalone raw copy (a linked clone's chain is flattened), sparse, reporting qemu-img's
    progress as it goes. qemu-img never outlives the call: a failing progress callback kills it."""
    command = ["qemu-img", "convert", "-p", "-f", files.disk_format(source), "-O", "raw", str(source), str(target)]
    # stderr to a file: a pipe read only after stdout's end could fill up and stall qemu-img.
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            with process.stdout:
                for line in iter(process.stdout.readline, ""):
                    for percent in re.findall(r"\((\d+(?:\.\d+)?)/100%\)", line):
                        progress(float(percent) / 100)
            returncode = process.wait()
        except BaseException:
            process.kill()
            process.wait()
            target.unlink(missing_ok=True)
            raise
        if returncode != 0:
            target.unlink(missing_ok=True)
            errors.seek(0)
            message = errors.read().strip()[-ERROR_TAIL_CHARS:]  # qemu-img's last words say what went wrong
            raise DriverError(f"copying {source} to {target.name} failed: {message}")
