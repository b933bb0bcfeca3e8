"""The Guest Tools Service: proxies on every host, one leader elected by a lease in Redis."""
