"""Operations on the metrics address, never on the public listener: ``metrics`` (the Prometheus
observer), ``server`` (the small HTTP server and what each role serves), ``status`` (the edge's
status page)."""
