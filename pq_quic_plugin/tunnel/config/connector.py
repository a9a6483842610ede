"""The connector's ``config.yml``: :class:`ConnectorConfig` and :func:`load_connector_config`.

What each key means, its default and its flag are in ``fields.CONNECTOR_FIELDS``; this module
adds what a table cannot say: rules across keys (post-quantum needs a post-quantum group),
what ``run`` needs before it can start, and how ``--url`` replaces the ingress rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...policy import GroupPolicy, Policy
from ..hostnames import HostPort
from .environment import environment_changes
from .errors import ConfigError
from .fields import CONNECTOR_FIELDS
from .ingress import IngressRule
from .origin_request import OriginSettings
from .table import convert_overrides, read_section
from .yaml_reader import YamlReader

__all__ = ["ConnectorConfig", "load_connector_config"]

_default = CONNECTOR_FIELDS.dataclass_default


@dataclass(frozen=True)
class ConnectorConfig:
    """What ``pq-tunnel run`` needs; the defaults are the field table's.

    ``tunnel`` may be ``None`` when the credentials file names it. ``retries`` is the number of
    consecutive failed attempts per connection before the connector gives up (0, the default:
    retry forever, waiting at most ``max_backoff`` between attempts); a successful
    registration resets the count. ``source`` is the file read, if any.
    """

    tunnel: str | None = _default("tunnel")
    credentials_file: Path | None = _default("credentials_file")
    edge: tuple[HostPort, ...] = _default("edge")
    post_quantum: bool = _default("post_quantum")
    post_quantum_auth: bool = _default("post_quantum_auth")
    groups: tuple[str, ...] | None = _default("groups")
    ha_connections: int = _default("ha_connections")
    metrics: HostPort = _default("metrics")
    loglevel: str = _default("loglevel")
    logfile: Path | None = _default("logfile")
    log_format: str = _default("log_format")
    grace_period: float = _default("grace_period")
    pq_report_url: str | None = _default("pq_report_url")
    retries: int = _default("retries")
    max_backoff: float = _default("max_backoff")
    ca_file: Path | None = _default("ca_file")
    edge_server_name: str | None = _default("edge_server_name")
    protocol: str = _default("protocol")
    origin_request: OriginSettings = _default("origin_request")
    ingress: tuple[IngressRule, ...] = _default("ingress")
    source: Path | None = None

    # -- queries ---------------------------------------------------------------------------

    def ingress_match(self, host: str, path: str) -> IngressRule:
        """The first rule matching ``host`` (any case, ``:port`` ignored) and ``path``."""
        for rule in self.ingress:
            if rule.matches(host, path):
                return rule
        # Unreachable for a validated config, whose last rule is a catch-all.
        raise LookupError("no ingress rules configured; add an ingress list or pass --url")

    def server_name_for(self, edge: HostPort) -> str:
        """SNI for an edge address: ``edge-server-name`` when set, else the edge's host."""
        return self.edge_server_name or edge.host

    def check_runnable(self) -> None:
        """Raise :class:`ConfigError` unless everything ``run`` needs has been given.

        Each missing key is named with the flag that can give it instead. The credentials
        file may be left out when the tunnel is named: ``run`` then looks for its credentials
        where ``create`` puts them (``~/.pq-tunnel``).
        """
        missing = []
        credentials = self.credentials_file is not None or self.tunnel is not None
        for attr, instead, given in (
            ("credentials_file", "credentials_file", credentials),
            ("edge", "edge", bool(self.edge)),
            ("ingress", "url", bool(self.ingress)),
        ):
            if not given:
                key = CONNECTOR_FIELDS.by_attr(attr).key
                missing.append(f"{key} (or {CONNECTOR_FIELDS.by_attr(instead).flag_usage()})")
        if missing:
            where = f"{self.source}: " if self.source else ""
            raise ConfigError(
                f"{where}missing: {'; '.join(missing)}",
                source=None if self.source is None else str(self.source),
            )

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def quick(
        cls,
        url: str,
        edge: str | HostPort | Sequence[str | HostPort],
        credentials_file: str | Path | None,
        **overrides: Any,
    ) -> ConnectorConfig:
        """A quick tunnel: one catch-all rule sending everything to ``url``.

        ``overrides`` are the same keyword arguments as :meth:`with_overrides`.
        """
        return cls().with_overrides(
            url=url, edge=edge, credentials_file=credentials_file, **overrides
        )

    def with_overrides(
        self, environ: Mapping[str, str] | None = None, **flags: Any
    ) -> ConnectorConfig:
        """Apply ``TUNNEL_*`` variables from ``environ``, then command-line flags (attribute
        names; ``None`` means not given): flag > variable > file.

        Accepts every field a flag could set, including those without a flag today, plus
        ``url`` (replaces the ingress rules with a single catch-all to that service, with
        ``origin_ca_file`` and ``origin_server_name`` for an ``https://`` one). Values are
        validated as in the file and errors name the flag or the variable, e.g.
        ``--ha-connections: expected ...``, ``TUNNEL_HA_CONNECTIONS: expected ...``. Relative
        paths are taken as given (relative to the current directory).
        """
        from_env = environment_changes(CONNECTOR_FIELDS, environ or {})
        from_flags = convert_overrides(CONNECTOR_FIELDS, flags)
        changes = {**from_env, **from_flags}

        def label(attr: str) -> str:
            f = CONNECTOR_FIELDS.by_attr(attr)
            return f.label if attr in from_flags or f.env is None else f.env

        _quick_rule(changes, label)
        out = dataclasses.replace(self, **changes)
        try:
            check_pq_groups(out.post_quantum, out.groups)
        except ValueError as exc:
            name = label("groups" if "groups" in changes else "post_quantum")
            raise ConfigError(f"{name}: {exc}", key=name) from None
        return out


CONNECTOR_FIELDS.check_dataclass(ConnectorConfig, extra=("source",))

#: The quick tunnel's options for its one rule: the rule's keys of the same names.
_QUICK_RULE_OPTIONS = ("origin_ca_file", "origin_server_name")


def _quick_rule(changes: dict[str, Any], label: Any) -> None:
    """Turn ``url`` (and its TLS options) in ``changes`` into the one catch-all rule.

    The options mean something only for that rule: without ``url`` they are an error that says
    where they belong, and for a service without TLS an error as in a file.
    """
    options = {a: changes.pop(a) for a in _QUICK_RULE_OPTIONS if a in changes}
    if "url" not in changes:
        if options:
            name = label(next(iter(options)))
            raise ConfigError(
                f"{name}: only with --url; in config.yml set it on the ingress rule",
                key=name,
            )
        return
    service = changes.pop("url")
    if options and not service.tls:
        name = label(next(iter(options)))
        raise ConfigError(
            f"{name}: only applies to https:// services, not {service.text!r}", key=name
        )
    changes["ingress"] = (IngressRule(service=service, **options),)


def check_pq_groups(post_quantum: bool, groups: tuple[str, ...] | None) -> None:
    """``post-quantum: true`` with a group list must leave something post-quantum to offer."""
    if post_quantum and groups is not None:
        try:
            GroupPolicy.build(Policy.REQUIRE, groups)
        except ValueError as exc:
            raise ValueError(f"{exc} (post-quantum is on)") from None


def load_connector_config(path: str | Path) -> ConnectorConfig:
    """Read and validate a connector ``config.yml``; relative paths are against its directory."""
    r = YamlReader(Path(path))
    section = read_section(r, r.compose(), "", CONNECTOR_FIELDS)
    values = section.values
    try:
        check_pq_groups(values["post_quantum"], values["groups"])
    except ValueError as exc:
        raise r.error(section.keys["groups"][1], "groups", str(exc)) from None
    return ConnectorConfig(**values, source=r.path)
