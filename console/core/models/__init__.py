"""The kernel's models: tasks, access (API tokens, the audit log) and the sim driver's domains. They are
tables of the `console` app (its models package imports this one)."""

from .access import ApiToken, AuditEvent
from .sim import SimDomain
from .tasks import Task

__all__ = ["ApiToken", "AuditEvent", "SimDomain", "Task"]
