"""Observability (CONTRACT.md §7): Prometheus metrics (`metrics`), the `gateway.access` JSON
log line (`access`) and request ids (`request_id`)."""
