"""The agent's freeze and thaw (vss-snapshot), with the real watchdog process and real hook scripts. fsfreeze
itself stands in as a script that logs what it is asked (freezing this machine's own filesystems in a test
would stop it): tests/integration/test_qemu_snapshots.py runs the real one inside the Debian guest."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ngt.agent import freeze
from tests.realparts import wait_for

REPOSITORY = Path(__file__).resolve().parents[2]
MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
tmpfs /run tmpfs rw,nosuid 0 0
/dev/vda1 /home ext4 rw,relatime 0 0
/dev/vdb1 /var xfs rw,relatime 0 0
/dev/sr0 /media/tools iso9660 ro 0 0
/dev/vdc1 /mnt/facet-restore/first/vdc1 ext4 ro 0 0
/dev/vdd1 /srv ext4 ro 0 0
"""


@pytest.fixture
def guest(tmp_path):
    """A fake fsfreeze logging to `fsfreeze.log` (failing for mounts named in `fail`, sleeping on `-f` while
    `slow` exists), a hooks directory whose scripts log to `hooks.log`, and the mounts above."""
    (tmp_path / "mounts").write_text(MOUNTS)
    script = tmp_path / "fsfreeze"
    script.write_text(f"""#!/bin/sh
[ -e {tmp_path}/slow ] && [ "$1" = -f ] && sleep 3
grep -qx "$2" {tmp_path}/fail 2>/dev/null && {{ echo "fsfreeze: $2: cannot freeze" >&2; exit 1; }}
echo "$1 $2" >> {tmp_path}/fsfreeze.log
""")
    script.chmod(0o755)
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    for name in ("10-database", "20-queue"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\necho \"{name} $1\" >> {tmp_path}/hooks.log\n")
        hook.chmod(0o755)
    (hooks / "README").write_text("not executable: not run\n")
    return tmp_path


def freezer(guest: Path) -> freeze.Freezer:
    return freeze.Freezer([str(guest / "fsfreeze")], guest / "hooks.d", guest / "state", guest / "mounts")


def log(guest: Path, name: str) -> list[str]:
    path = guest / name
    return path.read_text().splitlines() if path.exists() else []


def test_writable_freezable_mounts_once_per_device(guest):
    assert freeze.writable_mounts(guest / "mounts") == ["/", "/var"]


def test_freeze_runs_the_hooks_then_freezes_deepest_first_and_thaw_undoes_it_in_reverse(guest):
    agent = freezer(guest)
    answer = agent.freeze(30)
    assert answer == {"frozen": ["/", "/var"], "timeout": 30.0}
    assert log(guest, "hooks.log") == ["10-database freeze", "20-queue freeze"]
    assert log(guest, "fsfreeze.log") == ["-f /var", "-f /"]
    assert json.loads((guest / "state" / freeze.FROZEN_FILE).read_text()) == ["/", "/var"]

    answer = agent.thaw()
    assert answer == {"thawed": ["/", "/var"], "thawed_by_watchdog": False, "problems": []}
    assert log(guest, "fsfreeze.log")[2:] == ["-u /", "-u /var"]
    assert log(guest, "hooks.log")[2:] == ["20-queue thaw", "10-database thaw"]
    assert not (guest / "state" / freeze.FROZEN_FILE).exists()
    with pytest.raises(freeze.FreezeError, match="frozen already"):
        agent.freeze(30)
        agent.freeze(30)
    agent.thaw()


def test_a_freeze_nobody_thaws_is_thawed_by_the_watchdog(guest):
    agent = freezer(guest)
    agent.freeze(1)
    wait_for(lambda: log(guest, "hooks.log")[2:] == ["20-queue thaw", "10-database thaw"], 10,
             "the watchdog to thaw and run the thaw hooks")
    assert log(guest, "fsfreeze.log")[2:] == ["-u /", "-u /var"]
    answer = agent.thaw()  # the console's thaw, too late
    assert answer["thawed_by_watchdog"] is True
    assert len(log(guest, "fsfreeze.log")) == 4  # nothing thawed twice


def test_a_thaw_arriving_while_the_watchdog_thaws_waits_for_it_and_runs_no_hook_twice(guest):
    slow_hook = guest / "hooks.d" / "30-slow"
    slow_hook.write_text(f"#!/bin/sh\necho \"30-slow $1\" >> {guest}/hooks.log\n[ $1 = thaw ] && sleep 2\nexit 0\n")
    slow_hook.chmod(0o755)
    agent = freezer(guest)
    agent.freeze(1)
    wait_for(lambda: "30-slow thaw" in log(guest, "hooks.log"), 10, "the watchdog's thaw to start")
    answer = agent.thaw()  # the console's thaw, while the watchdog's runs its hooks
    assert answer["thawed_by_watchdog"] is True
    assert log(guest, "hooks.log")[3:] == ["30-slow thaw", "20-queue thaw", "10-database thaw"]  # once each
    assert log(guest, "fsfreeze.log")[2:] == ["-u /", "-u /var"]


def test_the_agent_killed_while_frozen_leaves_the_watchdog_to_thaw(guest):
    program = (f"import os, sys; sys.path.insert(0, {str(REPOSITORY)!r}); from pathlib import Path; "
               "from ngt.agent import freeze; "
               f"g = Path({str(guest)!r}); "
               "freeze.Freezer([str(g / 'fsfreeze')], g / 'hooks.d', g / 'state', g / 'mounts').freeze(2); "
               "os.kill(os.getpid(), 9)")
    done = subprocess.run([sys.executable, "-c", program], cwd=REPOSITORY, timeout=30)
    assert done.returncode == -signal.SIGKILL
    assert log(guest, "fsfreeze.log") == ["-f /var", "-f /"]  # frozen, and its agent is gone
    wait_for(lambda: not (guest / "state" / freeze.FROZEN_FILE).exists(), 15, "the watchdog to thaw")
    assert log(guest, "fsfreeze.log")[2:] == ["-u /", "-u /var"]


def test_the_watchdog_thaws_at_once_when_systemd_stops_it(guest):
    agent = freezer(guest)
    agent.freeze(300)
    started = time.monotonic()
    os.kill(agent.watchdog.pid, signal.SIGTERM)
    agent.watchdog.wait(10)
    assert time.monotonic() - started < 5
    assert log(guest, "fsfreeze.log")[2:] == ["-u /", "-u /var"]


def test_a_restarted_agent_thaws_what_was_left_frozen(guest):
    (guest / "state").mkdir()
    (guest / "state" / freeze.FROZEN_FILE).write_text('["/var", "/"]')
    freezer(guest).thaw_leftovers()
    assert log(guest, "fsfreeze.log") == ["-u /var", "-u /"]
    assert not (guest / "state" / freeze.FROZEN_FILE).exists()


def test_a_failing_pre_freeze_hook_freezes_nothing(guest):
    hook = guest / "hooks.d" / "15-refuses"
    hook.write_text("#!/bin/sh\n[ \"$1\" = freeze ] && { echo 'database busy' >&2; exit 3; }\nexit 0\n")
    hook.chmod(0o755)
    with pytest.raises(freeze.FreezeError, match=r"15-refuses \(exit 3: database busy\)"):
        freezer(guest).freeze(30)
    assert log(guest, "fsfreeze.log") == []
    assert log(guest, "hooks.log") == ["10-database freeze", "20-queue freeze", "20-queue thaw", "10-database thaw"]


def test_a_mount_that_will_not_freeze_thaws_the_others(guest):
    (guest / "fail").write_text("/\n")
    agent = freezer(guest)
    with pytest.raises(freeze.FreezeError, match="fsfreeze / failed: fsfreeze: /: cannot freeze"):
        agent.freeze(30)
    assert log(guest, "fsfreeze.log") == ["-f /var", "-u /var"]
    assert agent.watchdog is None and not (guest / "state" / freeze.FROZEN_FILE).exists()


def test_a_thaw_during_a_slow_freeze_waits_for_it_and_thaws_everything(guest):
    import threading

    (guest / "slow").touch()  # each fsfreeze -f takes 3 s
    agent = freezer(guest)
    freezing = threading.Thread(target=agent.freeze, args=(300,))
    freezing.start()
    wait_for(lambda: agent.watchdog is not None, 10, "the freeze to begin")
    answer = agent.thaw()  # the console gave up on the freeze and thaws
    freezing.join(20)
    assert answer["thawed"] == ["/", "/var"] and agent.watchdog is None
    assert log(guest, "fsfreeze.log") == ["-f /var", "-f /", "-u /", "-u /var"]
