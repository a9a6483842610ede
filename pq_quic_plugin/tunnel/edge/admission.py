"""The listener base for links that must prove who they are before anything else: QUIC on
UDP and HTTP/2 on TLS over TCP at one address, then an admission on the control stream.

Two listeners subclass it, each only with its gate: the connector listener (:mod:`.connectors`:
a connector registers with its tunnel's key) and the cluster's relay listener
(:mod:`..cluster.peer_listener`: a peer edge proves the cluster key). A gate decides who may in
and what an admitted link may do; everything around it is one rule, kept here so the two cannot
drift apart:

- both transports on one port (the port-0 retry is :func:`..wire.h2_endpoints.listen_quic_and_h2`);
- an unadmitted link has the listener's deadline from its first packet, the control stream only
  (any other stream, or a second control stream, closes the whole link) and strictly decoded
  messages (:func:`next_control`);
- a refusal the gate explains (:class:`Refused`) is answered with its public reason, then the
  link is closed with ``ERROR_AUTH``; any other failure closes it with the gate's one closing
  reason and no answer, so a stranger learns nothing from how it failed. The detail goes to the
  edge's log, with every value the peer sent escaped and cut short (:mod:`..log_safe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from aioquic.asyncio import serve
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration

from ...aioquic_binding import configure
from ...aioquic_binding.auth_config import configure_auth
from ...aioquic_binding.facade import server_port
from ...policy import Policy
from ..hostnames import format_hostport
from ..log_safe import shown
from ..wire import (
    ALPN,
    CONTROL_STREAM_ID,
    ERROR_AUTH,
    FrameType,
    ProtocolError,
    StreamReset,
    TunnelConnection,
    TunnelLink,
    TunnelStream,
    decode_control,
)
from ..wire.h2_endpoints import edge_tls, listen_quic_and_h2
from ..wire.h2_transport import H2TunnelConnection

__all__ = ["AdmittingListener", "Refused", "Words", "next_control", "remote_of"]

#: Who an admitted link is, as its listener says (a registered connection, a peer's edge ID).
Who = TypeVar("Who")
#: What a link's streams are handed to (a QUIC ``Channel`` or an ``H2Channel``).
Handler = Callable[[Any], Awaitable[None]]


class Refused(Exception):
    """A refusal the peer gets an answer to: ``public`` is what it is told, ``detail`` what
    the edge logs."""

    def __init__(self, public: str, detail: str) -> None:
        super().__init__(detail)
        self.public = public
        self.detail = detail


@dataclass(frozen=True)
class Words:
    """How one listener's log (``logger``) speaks of its links, and what an unanswered refusal
    closes them with: ``refused {kind} from ADDRESS: no {step} within 10s``, ``opened stream 4
    before {doing}``."""

    kind: str
    step: str
    doing: str
    closing: str
    logger: str


class AdmittingListener(Generic[Who]):
    """The listener base: binds both transports and holds every new link at the gate until
    the subclass's :meth:`authenticate` admits it.

    A subclass is one gate. It sets :attr:`words` (and, when they differ, :attr:`policies` and
    :attr:`idle_timeout`) and implements the hooks below, which say how a link proves who it
    is and what it may do once admitted; it never sees an unadmitted link's other streams.
    """

    #: How logs speak of this listener's links.
    words: ClassVar[Words]
    #: The key-exchange policies :meth:`start` takes; the first is its default.
    policies: ClassVar[tuple[Policy, ...]] = (Policy.PREFER, Policy.REQUIRE, Policy.OFF)
    #: Seconds of silence after which QUIC closes a link, unless :meth:`start` is told.
    idle_timeout: ClassVar[float] = 15.0

    def __init__(self, deadline: float) -> None:
        #: From a link's first packet to its admission, at most.
        self.deadline = deadline
        self.log = logging.getLogger(self.words.logger)
        self._quic: QuicServer | None = None
        self._tcp: asyncio.Server | None = None
        self._accepting = True
        self._links: set[TunnelLink] = set()

    async def start(
        self,
        host: str,
        port: int,
        certfile: str,
        keyfile: str,
        policy: Policy | None = None,
        groups: Sequence[str] | None = None,
        idle_timeout: float | None = None,
        certificates: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Bind UDP, then TCP on the same port; return the port (useful when ``port`` is 0).
        ``policy`` applies to both (``off``: aioquic's classical groups on QUIC);
        ``certificates``: an ML-DSA pair next to ``certfile``, for peers that offer ML-DSA
        (docs/auth.md)."""
        policy = self.policies[0] if policy is None else policy
        if policy not in self.policies:
            raise ValueError(f"the {self.words.kind} listener does not run under {policy}")
        config = QuicConfiguration(
            is_client=False,
            alpn_protocols=[ALPN],
            idle_timeout=self.idle_timeout if idle_timeout is None else idle_timeout,
        )
        config.load_cert_chain(certfile, keyfile)
        if policy is not Policy.OFF:
            configure(config, policy, groups=groups)
            configure_auth(config, "prefer", certificates=list(certificates))
        handler = self._handler

        class _Quic(TunnelConnection):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.stream_handler = handler(self)

        quic, tcp, bound = await listen_quic_and_h2(
            host,
            port,
            lambda p: serve(host, p, configuration=config, create_protocol=_Quic),
            server_port,
            lambda server: server.close(),
            edge_tls(certfile, keyfile, policy, groups, certificates),
            self._h2_link,
        )
        self._quic, self._tcp = quic, tcp
        self.listening(format_hostport(host, bound), policy, groups)
        return int(bound)

    def stop_accepting(self) -> None:
        """Refuse new links from now on (the edge is stopping); live ones carry on."""
        self._accepting = False

    def close(self) -> None:
        """Stop listening (live links carry on: :meth:`close_links` ends them)."""
        for server in (self._quic, self._tcp):
            if server is not None:
                server.close()

    def close_links(self, code: int, reason: str) -> None:
        """Close every link this listener holds, admitted or not."""
        for link in list(self._links):
            if not link.closed:
                link.close(error_code=code, reason_phrase=reason)
                link.transmit()

    # -- the gate: what each listener says for itself ----------------------------------------

    def listening(self, address: str, policy: Policy, groups: Sequence[str] | None) -> None:
        """:meth:`start` bound ``address``: the log line that says so."""
        raise NotImplementedError

    def new_h2_link(self) -> H2TunnelConnection:
        """A new link over TCP (its TLS handshake still to come), in this listener's role."""
        raise NotImplementedError

    async def authenticate(self, link: TunnelLink, control: TunnelStream, remote: str) -> Who:
        """The admission exchange on ``control``; raises :class:`Refused` (answered), or
        ``StreamReset``/``ProtocolError`` (closed unanswered)."""
        raise NotImplementedError

    async def admitted(
        self, link: TunnelLink, control: TunnelStream, who: Who, seconds: float
    ) -> None:
        """The admitted link's bookkeeping, then its control stream until it ends;
        ``seconds`` since its first packet."""
        raise NotImplementedError

    async def serve(self, stream: TunnelStream, who: Who) -> None:
        """A stream the admitted peer opened."""
        raise NotImplementedError

    def refused(self, remote: str, detail: str) -> None:
        """A link was refused (already logged): for metrics, when the listener keeps any."""

    def handshake_failed(self, seconds: float) -> None:
        """A link closed before its TLS handshake finished, ``seconds`` after its first
        packet (a classical peer under ``require``, a certificate it refused, silence)."""

    # -- the rules every link goes through ---------------------------------------------------

    def _h2_link(self) -> H2TunnelConnection:
        link = self.new_h2_link()
        link.stream_handler = self._handler(link)
        return link

    def _handler(self, link: TunnelLink) -> Handler:
        """What a new link's streams go to; runs at its first packet (QUIC) or connection."""
        if not self._accepting:
            link.refuse_soon("edge shutting down")
        pending: _Pending[Who] = _Pending(link, self.deadline, self._expired)
        self._links.add(link)
        link.on_close.append(self._links.discard)
        link.on_close.append(lambda _: self._closed(link, pending))

        async def handle(stream: TunnelStream) -> None:
            if pending.who is not None:
                await self.serve(stream, pending.who)
            elif pending.control_claimed or stream.stream_id != CONTROL_STREAM_ID:
                self._drop(link, f"opened stream {stream.stream_id} before {self.words.doing}")
            else:
                pending.control_claimed = True
                await self._admit(link, stream, pending)

        return handle

    def _closed(self, link: TunnelLink, pending: _Pending[Who]) -> None:
        if not link.handshake_done:
            self.handshake_failed(pending.age())

    async def _admit(self, link: TunnelLink, control: TunnelStream, pending: _Pending[Who]) -> None:
        remote = remote_of(link)
        step = self.words.step
        try:
            who = await asyncio.wait_for(
                self.authenticate(link, control, remote), pending.remaining()
            )
        except Refused as refused:
            await self._answer(link, control, remote, refused)
            return
        except asyncio.TimeoutError:
            self._drop(link, f"no {step} within {self.deadline:g}s")
            return
        except (StreamReset, ProtocolError) as exc:
            self._drop(link, f"{step} failed: {shown(str(exc), 200)}")
            return
        pending.done(who)
        await self.admitted(link, control, who, pending.age())

    def _log_refusal(self, remote: str, detail: str) -> None:
        self.log.warning("refused %s from %s: %s", self.words.kind, remote, detail)

    def _drop(self, link: TunnelLink, detail: str) -> None:
        """Close an unadmitted link that broke the protocol, unanswered (the peer did not
        follow it, and a stranger learns nothing from the close)."""
        remote = remote_of(link)
        self._log_refusal(remote, detail)
        self.refused(remote, detail)
        _close(link, self.words.closing)

    def _expired(self, link: TunnelLink) -> None:
        """The deadline passed before the peer even opened its control stream: logged and
        closed, not counted as a refusal (a handshake that never finished is counted as
        such by :meth:`_closed`)."""
        self._log_refusal(remote_of(link), f"no {self.words.step} within {self.deadline:g}s")
        _close(link, self.words.closing)

    async def _answer(
        self, link: TunnelLink, control: TunnelStream, remote: str, refused: Refused
    ) -> None:
        """Log the detail, tell the peer only ``refused.public``, then close the link."""
        self._log_refusal(remote, refused.detail)
        self.refused(remote, refused.detail)
        with contextlib.suppress(StreamReset):
            await control.send_json(FrameType.CONTROL, {"type": "error", "reason": refused.public})
        await asyncio.sleep(0.05)  # let the reason reach the peer before the close
        _close(link, refused.public[:200])


def _close(link: TunnelLink, reason: str) -> None:
    if not link.closed:
        link.close(error_code=ERROR_AUTH, reason_phrase=reason)
        link.transmit()


class _Pending(Generic[Who]):
    """A link until it is admitted: ``seconds`` from its first packet, keepalives or not,
    then who it is."""

    def __init__(
        self, link: TunnelLink, seconds: float, expired: Callable[[TunnelLink], None]
    ) -> None:
        self.control_claimed = False
        self.who: Who | None = None
        loop = asyncio.get_running_loop()
        self._link = link
        self._expired = expired
        self._start = loop.time()
        self._deadline = self._start + seconds
        self._timer = loop.call_at(self._deadline, self._expire)
        link.on_close.append(lambda _: self._timer.cancel())

    def remaining(self) -> float:
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def age(self) -> float:
        """Seconds since the link's first packet."""
        return asyncio.get_running_loop().time() - self._start

    def done(self, who: Who) -> None:
        self.who = who
        self._timer.cancel()

    def _expire(self) -> None:
        if self.who is None and not self._link.closed:
            self._expired(self._link)


async def next_control(
    stream: TunnelStream, expected: str, error: Callable[[str], Exception]
) -> dict[str, Any]:
    """The next frame on ``stream`` as a strictly decoded CONTROL message, before the peer is
    trusted: anything else (the stream ending, another frame type, a payload that does not
    decode) raises ``error(detail)``, the detail naming ``expected`` for the log."""
    frame = await stream.read()
    if frame is None:
        raise error(f"control stream ended before {expected!r}")
    kind, payload = frame
    if kind != FrameType.CONTROL:
        raise error(f"expected a CONTROL frame ({expected!r}), got {kind.name}")
    try:
        return decode_control(payload)
    except ProtocolError as exc:
        raise error(f"{expected!r}: {exc}") from None


def remote_of(link: TunnelLink) -> str:
    """The peer's address as logs show it, or ``?`` when the link cannot say."""
    try:
        return format_hostport(*link.peer_address())
    except (AttributeError, IndexError, TypeError):
        return "?"
