"""Sizes as people read and write them: binary units, `4 GiB` out, `10G` / `512M` in."""

UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def iec(size_bytes: float | int | None) -> str:
    size = float(size_bytes or 0)
    unit = 0
    while size >= 1024 and unit < len(UNITS) - 1:
        size /= 1024
        unit += 1
    text = f"{size:.1f}".rstrip("0").rstrip(".")
    return f"{text} {UNITS[unit]}"
