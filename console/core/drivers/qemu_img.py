"""qemu-img, as the libvirt driver runs it on the hypervisor host: full copies with progress, qcow2 overlays
and resizes; and, where an image arrives, the one look at a file's format that Facet ever takes.

Every other call names the format (`-f`): a format guessed from a file's first bytes lets whoever wrote
those bytes (a guest, into its raw disk) name a backing file on the host, which QEMU then reads into the VM."""

import json
import re
import subprocess
import tempfile
from pathlib import Path

from .base import DriverError, ProgressCallback

ERROR_TAIL_CHARS = 2000
DISK_FORMATS = ("raw", "qcow2")
# `qemu-img info` parses a file anyone may have made: bounded in time and memory (the OpenStack advice).
INFO_SECONDS, INFO_MEMORY_BYTES = 30, 1024**3


class UnsafeImage(DriverError):
    """A file that must not become an image: its format is unknown, or it reads other files."""


def inspect(path: Path, accepted: tuple[str, ...] = DISK_FORMATS) -> str:
    """The format of a file that has just arrived (not yet anyone's disk), one of `accepted` (`raw` or `qcow2`
    unless an import converts others); UnsafeImage for any other format, a backing file, an external data
    file or extent, or encryption."""
    command = ["prlimit", f"--as={INFO_MEMORY_BYTES}", f"--cpu={INFO_SECONDS}", "--",
               "qemu-img", "info", "--output=json", str(path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=INFO_SECONDS)
    except subprocess.TimeoutExpired:
        raise UnsafeImage(f"qemu-img took over {INFO_SECONDS} s to read the file; it is not an image") from None
    if result.returncode != 0:
        raise UnsafeImage(f"qemu-img cannot read the file: {result.stderr.strip()[-ERROR_TAIL_CHARS:]}")
    info = json.loads(result.stdout)
    found = info.get("format")
    if found not in accepted:
        raise UnsafeImage(f"the file's format is {found!r}; Facet takes {', '.join(accepted)} images")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise UnsafeImage(f"the {found} file names a backing file ({info.get('backing-filename')!r}); "
                          "upload a standalone image (qemu-img convert -O qcow2 with no -B)")
    if info.get("format-specific", {}).get("data", {}).get("data-file"):
        raise UnsafeImage("the qcow2 file keeps its data in an external data file; upload a standalone image")
    extents = info.get("format-specific", {}).get("data", {}).get("extents", [])
    if any(extent.get("filename") != info.get("filename") for extent in extents):
        raise UnsafeImage(f"the {found} file keeps data in other files (extents); give a monolithic image")
    if info.get("encrypted"):
        raise UnsafeImage(f"the {found} file is encrypted; upload an unencrypted image")
    return found


def convert_standalone(source: Path, source_format: str, target: Path, target_format: str) -> None:
    """A format an import takes (vmdk, vhdx, qcow2) rewritten as a standalone `target_format` file, bounded in
    memory like `inspect` (the source is anyone's file)."""
    command = ["prlimit", f"--as={INFO_MEMORY_BYTES}", "--", "qemu-img", "convert", "-f", source_format,
               "-O", checked_format(target_format), str(source), str(target)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        target.unlink(missing_ok=True)
        raise DriverError(f"qemu-img could not convert the {source_format} image: "
                          f"{result.stderr.strip()[-ERROR_TAIL_CHARS:]}")


def checked_format(disk_format: str) -> str:
    if disk_format not in DISK_FORMATS:
        raise DriverError(f"disk format {disk_format!r} is not one of {', '.join(DISK_FORMATS)}")
    return disk_format


def run(*arguments: str) -> None:
    result = subprocess.run(["qemu-img", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise DriverError(f"qemu-img {arguments[0]} failed: {result.stderr.strip() or result.stdout.strip()}")


def convert(source: Path, source_format: str, target: Path, progress: ProgressCallback) -> None:
    """A full, standalone raw copy (a linked clone's chain is flattened), sparse, reporting qemu-img's
    progress as it goes. qemu-img never outlives the call: a failing progress callback kills it."""
    command = ["qemu-img", "convert", "-p", "-f", checked_format(source_format), "-O", "raw", str(source),
               str(target)]
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
