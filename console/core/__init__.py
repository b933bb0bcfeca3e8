"""The kernel every app builds on: the task framework (`tasks`), errors, actors, the audit log, access
(roles and API tokens), the hypervisor drivers, the API and view kit, and the registry through which apps
plug in (`registry`). It imports no feature (tests/test_layers.py)."""
