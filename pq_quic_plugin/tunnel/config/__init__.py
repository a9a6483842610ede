"""Configuration files and flags: ``config.yml`` (connector) and ``edge.yaml`` (edge)."""
