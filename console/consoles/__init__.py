"""Browser consoles of VMs: single-use tickets, the websockets that carry a VM's screen (VNC) and serial port
between the browser and the hypervisor host, and the audit of every session."""
