"""Guest Tools operations: the per-VM state and its tasks (`guest_tools`), the certificate authority
(`authority`), tools ISOs (`tools_iso`), each clone's identity (`identity`), consistent snapshots (`quiesce`),
self-service restore (`restore`), the sweep of stale ISOs (`sweep`) and the demo's guests (`demo`)."""
