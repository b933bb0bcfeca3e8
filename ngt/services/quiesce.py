"""`vss-snapshot`: the Guest Tools side of an application-consistent snapshot, plugged into the inventory's
snapshots as the `quiesce` VM hook. While a running VM's disks are snapshotted, its linked agent holds the
guest's writable filesystems frozen (ngt/agent/freeze.py); the snapshot records whether it did, and why not."""

import contextlib
import time
from collections.abc import Iterator

from redis.exceptions import RedisError

from console.core.registry import Consistency
from console.models import VM

from ..daemon import commands
from ..models import GuestTools

CAPABILITY = "vss-snapshot"
# The agent thaws by itself this long after freezing, whatever the console does: the snapshot must be taken
# within it. A libvirt disk-only snapshot takes well under a second.
FREEZE_SECONDS = 30
FREEZE_REPLY_SECONDS = 20  # hooks and fsfreeze of each mount; after this the snapshot goes on without
THAW_REPLY_SECONDS = 20


@contextlib.contextmanager
def quiesce(vm: VM, consistency: Consistency) -> Iterator[None]:
    state = GuestTools.objects.filter(vm=vm).first()
    if state is None or CAPABILITY not in state.capabilities:
        consistency.note = f"crash-consistent: the {CAPABILITY} capability is off"
        yield
        return
    if not state.link_active:
        consistency.note = "crash-consistent: the Guest Tools agent is not linked"
        yield
        return
    asked = time.monotonic()
    try:
        frozen = commands.send_command(str(vm.uuid), "freeze", timeout=FREEZE_REPLY_SECONDS,
                                       arguments={"timeout": FREEZE_SECONDS})
    except (RedisError, OSError) as exc:  # the snapshot is still taken, crash-consistent
        consistency.note = f"crash-consistent: the Guest Tools Service could not be reached ({exc})"
        yield
        return
    if frozen is None or not frozen.get("ok"):
        why = f"no answer within {FREEZE_REPLY_SECONDS} s" if frozen is None else frozen.get("error", "refused")
        consistency.note = f"crash-consistent: the guest did not freeze ({why})"
        # Unanswered, it may freeze late: the agent's thaw waits for that freeze and undoes it, rather than the
        # guest staying frozen until its watchdog's deadline (a thaw of a guest that is not frozen does nothing).
        with contextlib.suppress(RedisError, OSError):
            commands.send_command(str(vm.uuid), "thaw", timeout=THAW_REPLY_SECONDS)
        yield
        return
    try:
        yield
    finally:
        held = time.monotonic() - asked < FREEZE_SECONDS
        try:
            thawed = commands.send_command(str(vm.uuid), "thaw", timeout=THAW_REPLY_SECONDS)
        except (RedisError, OSError):
            thawed = None  # the guest's watchdog thaws it
        mounts = ", ".join(frozen.get("frozen") or []) or "no filesystems"
        if thawed is not None and thawed.get("thawed_by_watchdog") or not held:
            consistency.consistent = False
            consistency.note = (f"crash-consistent: the guest thawed itself after {FREEZE_SECONDS} s, before the "
                                "snapshot ended")
        else:
            consistency.consistent = True
            consistency.note = f"application-consistent: the agent froze {mounts}"
            if thawed is None or not thawed.get("ok"):
                consistency.note += "; the thaw was not confirmed (the guest's watchdog thaws it)"
