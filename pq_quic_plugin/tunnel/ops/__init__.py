"""Operator endpoints: /metrics, /ready, /healthcheck and the status page (never public)."""
