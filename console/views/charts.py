"""Line charts drawn as inline SVG from a metrics series: one path per run of samples, so a gap in the data
(a host down, a VM off) is a gap in the line, never a drop to zero."""

from dataclasses import dataclass

from ..services.metrics import Series

WIDTH, HEIGHT = 600, 120


@dataclass(frozen=True)
class Line:
    name: str
    paths: list[str]
    latest: float | None


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str  # "%" or "B" or "B/s"
    top: float
    lines: list[Line]
    start: str
    end: str

    @property
    def empty(self) -> bool:
        return not any(line.paths for line in self.lines)


def _paths(values: list[float | None], top: float) -> list[str]:
    """SVG path data, one per run of values that are not None; a lone value is a short dash."""
    step = WIDTH / max(len(values) - 1, 1)
    runs, current = [], []
    for index, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((index * step, HEIGHT - HEIGHT * min(value, top) / top))
    if current:
        runs.append(current)
    paths = []
    for run in runs:
        if len(run) == 1:
            run = [(max(run[0][0] - 2, 0), run[0][1]), (run[0][0] + 2, run[0][1])]
        paths.append("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in run))
    return paths


def chart(series: Series, title: str, figures: dict[str, str], unit: str, top: float | None = None) -> Chart:
    """`figures`: series figure -> line name. `top` fixes the scale (100 for %); else it fits the data."""
    peak = max((v for name in figures for v in series.figures[name] if v is not None), default=0)
    top = top or _nice(peak)
    lines = [Line(label, _paths(series.figures[name], top),
                  next((v for v in reversed(series.figures[name]) if v is not None), None))
             for name, label in figures.items()]
    fmt = "%H:%M" if series.step < 3600 else "%m-%d %H:%M"
    return Chart(title, unit, top, lines, series.times[0].strftime(fmt), series.times[-1].strftime(fmt))


def _nice(peak: float) -> float:
    """A round top for the scale: 1, 2 or 5 times a power of ten, at or above the peak."""
    if peak <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(peak))) - 1)
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= peak)


def vm_charts(series: Series) -> list[Chart]:
    return [
        chart(series, "CPU", {"cpu_percent": "CPU"}, "%", top=100),
        chart(series, "Memory", {"memory_used": "used", "memory_total": "total"}, "B"),
        chart(series, "Disk I/O", {"disk_read": "read", "disk_write": "write"}, "B/s"),
        chart(series, "Network", {"net_rx": "received", "net_tx": "sent"}, "B/s"),
    ]
