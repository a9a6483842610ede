"""Configuration files and flags: ``config.yml`` (connector) and ``edge.yaml`` (edge).

Every key is declared once, in a field table (``fields.py``), which drives the YAML reader, the
flag overrides, ``pq-tunnel``'s argparse and the key reference in ``docs/tunnel-config.md``.
Import the public names from here; the modules behind them are an implementation detail.
"""

from ..hostnames import HostPort, hostname_matches, normalize_hostname, parse_hostport, strip_port
from .connector import ConnectorConfig, load_connector_config
from .edge import ConnectorListenerConfig, EdgeConfig, PublicListenerConfig, load_edge_config
from .errors import ConfigError
from .fields import (
    CONNECTOR_FIELDS,
    CONNECTORS_FIELDS,
    EDGE_FIELDS,
    PUBLIC_FIELDS,
    RULE_FIELDS,
    TABLES,
)
from .ingress import IngressRule, Service, parse_service
from .table import ConfigField, ConfigFlag, FieldTable
from .values import LOG_LEVELS, parse_duration

__all__ = [
    "CONNECTORS_FIELDS",
    "CONNECTOR_FIELDS",
    "EDGE_FIELDS",
    "LOG_LEVELS",
    "PUBLIC_FIELDS",
    "RULE_FIELDS",
    "TABLES",
    "ConfigError",
    "ConfigField",
    "ConfigFlag",
    "ConnectorConfig",
    "ConnectorListenerConfig",
    "EdgeConfig",
    "FieldTable",
    "HostPort",
    "IngressRule",
    "PublicListenerConfig",
    "Service",
    "hostname_matches",
    "load_connector_config",
    "load_edge_config",
    "normalize_hostname",
    "parse_duration",
    "parse_hostport",
    "parse_service",
    "strip_port",
]
