"""Application-consistent snapshots (`vss-snapshot`): freeze the guest's writable filesystems for the moment
the console snapshots the disks, and thaw them, whatever happens.

- `freeze`: the hook scripts in the hooks directory (executables, in name order) run with `freeze`, then
  `fsfreeze -f` on each writable mount, deepest first. Before the first freeze a watchdog process starts: it
  thaws the mounts (and runs the hooks with `thaw`) at the deadline, or at once on SIGTERM (systemd stopping
  the agent's unit), so a console that never asks for the thaw, or an agent killed while the guest is frozen,
  leaves nothing frozen. The frozen mounts are also written under the state directory (on /run, which is
  never frozen), and a restarted agent thaws what is listed there.
- `thaw`: `fsfreeze -u` on each (shallowest first), the hooks with `thaw` in reverse order, the watchdog
  stopped. The reply says whether the watchdog had thawed already (then the snapshot may have come after).

Nothing here writes to a frozen filesystem: logs go to stderr (a pipe), state to the state directory."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("facet-guest-tools")
HOOKS_DIR = "/etc/facet-guest-tools/hooks.d"
FROZEN_FILE = "frozen.json"
MOST_SECONDS = 600  # the longest freeze the console may ask for
HOOK_SECONDS = 30
WATCHDOG_START_SECONDS = 10
WATCHDOG_THAW_SECONDS = 4 * HOOK_SECONDS  # how long a thaw waits for the watchdog's, hooks included
# Filesystems fsfreeze works on; anything else (tmpfs, proc, iso9660, overlay...) is left alone.
FREEZABLE = {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "vfat", "exfat", "nilfs2"}


class FreezeError(Exception):
    """The guest could not be frozen; it was thawed again before this was raised."""


def writable_mounts(mounts_file: Path = Path("/proc/self/mounts")) -> list[str]:
    """Mount points of writable, freezable filesystems in mount order, one per device, leaving out those under
    /mnt/facet-restore (read-only snapshot disks)."""
    seen, found = set(), []
    for line in mounts_file.read_text().splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        device, point, kind, options = parts[0], parts[1].replace("\\040", " "), parts[2], parts[3].split(",")
        if kind in FREEZABLE and "rw" in options and device not in seen and not point.startswith("/mnt/facet-restore"):
            seen.add(device)
            found.append(point)
    return found


def run_hooks(hooks_dir: Path, phase: str, reverse: bool = False) -> list[str]:
    """Run each executable of the directory with `phase`; the names of those that failed."""
    try:
        hooks = sorted(p for p in hooks_dir.iterdir() if p.is_file() and os.access(p, os.X_OK))
    except OSError:
        return []
    failed = []
    for hook in reversed(hooks) if reverse else hooks:
        try:
            done = subprocess.run([str(hook), phase], capture_output=True, text=True, timeout=HOOK_SECONDS)
            if done.returncode != 0:
                failed.append(f"{hook.name} (exit {done.returncode}: {done.stderr.strip()[-200:]})")
        except (OSError, subprocess.TimeoutExpired) as exc:
            failed.append(f"{hook.name} ({exc})")
    return failed


def fsfreeze(command: list[str], flag: str, mount: str) -> str:
    """Run `fsfreeze -f|-u MOUNT`; its complaint, or "" when it worked."""
    try:
        done = subprocess.run([*command, flag, mount], capture_output=True, text=True, timeout=HOOK_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def thaw_all(command: list[str], mounts: list[str], hooks_dir: Path) -> list[str]:
    """Thaw every mount (a mount that is not frozen says so, harmlessly) and run the thaw hooks."""
    problems = [f"{mount}: {why}" for mount in mounts
                if (why := fsfreeze(command, "-u", mount)) and "Invalid argument" not in why]
    return problems + [f"hook {name}" for name in run_hooks(hooks_dir, "thaw", reverse=True)]


@dataclass
class Freezer:
    command: list[str]
    hooks_dir: Path
    state_dir: Path
    mounts_file: Path = Path("/proc/self/mounts")
    frozen: list[str] = field(default_factory=list)
    watchdog: subprocess.Popen | None = None
    watchdog_deadline: float = 0.0  # time.monotonic() at which the watchdog thaws by itself
    # A thaw that arrives while a freeze is under way (the console gave up waiting) waits for it, then thaws all.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def frozen_file(self) -> Path:
        return self.state_dir / FROZEN_FILE

    def freeze(self, seconds: float) -> dict:
        with self.lock:
            return self._freeze(seconds)

    def _freeze(self, seconds: float) -> dict:
        if self.frozen:
            raise FreezeError("the guest is frozen already")
        seconds = max(1.0, min(float(seconds), MOST_SECONDS))
        mounts = writable_mounts(self.mounts_file)
        failed = run_hooks(self.hooks_dir, "freeze")
        if failed:
            run_hooks(self.hooks_dir, "thaw", reverse=True)
            raise FreezeError(f"pre-freeze hook failed: {'; '.join(failed)}")
        try:
            # Taken before the watchdog starts, so its own deadline is never earlier than this one.
            self.watchdog_deadline = time.monotonic() + seconds
            self.watchdog = self._start_watchdog(mounts, seconds)
        except (FreezeError, OSError):
            run_hooks(self.hooks_dir, "thaw", reverse=True)
            raise
        self._remember(mounts)
        for mount in reversed(mounts):  # deepest first: /var before /
            why = fsfreeze(self.command, "-f", mount)
            if why:
                self._thaw()
                raise FreezeError(f"fsfreeze {mount} failed: {why}")
            self.frozen.append(mount)
            log.info("froze %s", mount)
        log.info("guest frozen (%d filesystems), thawed by the watchdog in %.0f s at the latest", len(mounts), seconds)
        return {"frozen": mounts, "timeout": seconds}

    def thaw(self) -> dict:
        with self.lock:
            return self._thaw()

    def _thaw(self) -> dict:
        """Thaw once. A watchdog still running is told to thaw now and waited for: it may be running its own
        thaw already (its deadline passed), and thawing beside it would run the thaw hooks twice."""
        by_watchdog = self.watchdog is not None and time.monotonic() >= self.watchdog_deadline
        mounts = list(reversed(self.frozen)) or self._remembered()
        if self.watchdog is not None:
            self._let_the_watchdog_thaw()
        # The watchdog removes the frozen list once it has thawed, before it exits; if it is still there,
        # nobody thawed (no watchdog, or one that died first).
        thawed = not self.frozen_file.exists()
        problems = [] if thawed or not mounts else thaw_all(self.command, mounts, self.hooks_dir)
        self.watchdog, self.frozen = None, []
        self.frozen_file.unlink(missing_ok=True)
        log.info("guest thawed%s", " (the watchdog had thawed it already)" if by_watchdog else "")
        return {"thawed": mounts, "thawed_by_watchdog": by_watchdog, "problems": problems}

    def _let_the_watchdog_thaw(self) -> None:
        if self.watchdog.poll() is None:
            self.watchdog.terminate()
            try:
                self.watchdog.wait(WATCHDOG_THAW_SECONDS)
            except subprocess.TimeoutExpired:  # stuck in a hook: it goes, and the thaw below runs instead
                self.watchdog.kill()
                self.watchdog.wait()

    def thaw_leftovers(self) -> None:
        """At start: thaw what a killed agent left frozen."""
        mounts = self._remembered()
        if mounts:
            log.warning("thawing what an earlier run of the agent froze: %s", ", ".join(mounts))
            thaw_all(self.command, mounts, self.hooks_dir)
            self.frozen_file.unlink(missing_ok=True)

    def _remember(self, mounts: list[str]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        partial = self.frozen_file.with_suffix(".part")
        partial.write_text(json.dumps(mounts))
        partial.replace(self.frozen_file)

    def _remembered(self) -> list[str]:
        try:
            return [str(m) for m in json.loads(self.frozen_file.read_text())]
        except (OSError, ValueError, TypeError):
            return []

    def _start_watchdog(self, mounts: list[str], seconds: float) -> subprocess.Popen:
        package = __package__ or "ngt.agent"
        command = [sys.executable, "-m", package, "thaw-watchdog", "--after", str(seconds),
                   "--fsfreeze-command", " ".join(self.command), "--hooks-dir", str(self.hooks_dir),
                   "--state-dir", str(self.state_dir), *(f"--mount={mount}" for mount in mounts)]
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        # Its own session: the agent's death (a kill, a crash) does not take it along. Nothing is frozen before
        # it says it is ready to thaw (its signal handlers in place).
        process = subprocess.Popen(command, env=environment, start_new_session=True, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([process.stdout], [], [], WATCHDOG_START_SECONDS)
        if not ready or process.stdout.readline().strip() != "ready":
            process.kill()
            process.wait()
            raise FreezeError(f"the thaw watchdog did not start within {WATCHDOG_START_SECONDS} s")
        process.stdout.close()
        return process


def watchdog(after: float, command: list[str], hooks_dir: Path, state_dir: Path, mounts: list[str]) -> int:
    """The watchdog process: thaw at the deadline, or at once when told to stop."""
    def thaw_now(*_args) -> None:
        # One thaw: a stop asked for while this one runs is ignored (one arriving before this line runs its
        # own thaw_now to the end, and os._exit leaves this one unfinished and unstarted).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        problems = thaw_all(command, mounts, hooks_dir)  # in mount order: shallowest first
        (state_dir / FROZEN_FILE).unlink(missing_ok=True)
        sys.stderr.write(f"facet-guest-tools watchdog: thawed {', '.join(mounts)}"
                         f"{' with problems: ' + '; '.join(problems) if problems else ''}\n")
        os._exit(0)

    signal.signal(signal.SIGTERM, thaw_now)
    signal.signal(signal.SIGHUP, thaw_now)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(after)
    thaw_now()
    return 0
