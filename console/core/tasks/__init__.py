"""Task lifecycle: create with the intent, enqueue on commit, run with heartbeat and progress, end,
roll up into a parent, and reap what a lost worker left behind.

A kind of task is declared once, on the function that does its work (`@task_kind("vm.clone")` on
`run_clone`), with the function that undoes written intent where a failure must (`undo_clone`). Every run
function is idempotent: a requeued task runs it again from the top and it skips what is already done.

The parts, in the order a task meets them:
- `kinds`: `task_kind`, the `Progress` a run function reports through, `task_label`;
- `sending`: `create_task` and `create_tasks` (the row, sent once the transaction commits), `sending_together`,
  `end_at_once`, and the sending itself (`send_all`, `requeue`);
- `running`: the worker's side: `execute` (claim, heartbeat, run, end), `execute_batch`, `received`, `run_here`;
- `ending`: `finish`, `fail` (with the kind's undo), `end_from_outside`, `roll_up` into a bulk parent;
- `control`: what a user asks of a task: `request_cancel`, `rerun`;
- `reaper`: `reap_stale`, for what a lost worker left behind;
- `entities`: a task's entity as pages link to it.

This package's own names are what the apps' services use to declare kinds and ask for work; the worker's entry
points, the task pages and the tests of the machinery import from the part that does it."""

from .ending import end_from_outside, finish, start_bulk
from .kinds import Progress, task_kind
from .running import run_here
from .sending import create_task, create_tasks, end_at_once, sending_together

__all__ = ["Progress", "create_task", "create_tasks", "end_at_once", "end_from_outside", "finish", "run_here",
           "sending_together", "start_bulk", "task_kind"]
