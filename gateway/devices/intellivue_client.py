"""Poll a Philips IntelliVue monitor over the LAN Data Export protocol (UDP).

Cycle: send the association request to the monitor's association port; on the accept, wait
for the MDS Create Event and confirm it; then every ``poll_interval_s`` send an extended poll
for numerics (and, with ``waves``, one for the real-time waves), joining linked replies into
one :class:`PollResult`, handed on with the arrival time of its first datagram. When nothing
was sent for ``keepalive_s`` an MDS Get keeps the association alive. A refused association,
an abort or release from the monitor, or silence past the profile's stale timeout ends the
association: the status is reported and a new association is requested (with capped backoff).
The monitor's clock (MDS create, poll replies, keep-alive) is compared with the receipt time:
past ``clock_drift_limit_s`` a ``clock-drift`` status is reported once, and ``clock-ok`` when
it is back.
Undecodable datagrams go to ``on_error`` (the caller keeps them as dead letters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.devices.pb840_client import DeviceStatusEvent, Status
from mappers.intellivue import (
    AssociationResult,
    ConnectIndication,
    IntellivueDecodeError,
    KeepAliveResult,
    MdsCreateEvent,
    PollResult,
    SessionEnd,
    association_request,
    decode_message,
    keep_alive_request,
    mds_create_result,
    poll_request,
)
from mappers.intellivue.nomenclature import NOM_MOC_VMO_METRIC_NU, NOM_MOC_VMO_METRIC_SA_RT
from mappers.profile_schema import IntellivueUdpTransport, Profile

__all__ = ["IntellivueClient", "MonitorSession", "discover_monitors"]

log = logging.getLogger(__name__)

PollCallback = Callable[["MonitorSession", PollResult, datetime], Awaitable[None]]
StatusCallback = Callable[[DeviceStatusEvent], Awaitable[None]]
ErrorCallback = Callable[[bytes, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MonitorSession:
    """What the monitor said about itself in its MDS Create Event."""

    mds: MdsCreateEvent
    associated_at: datetime


class _Datagrams(asyncio.DatagramProtocol):
    """Received datagrams with their arrival time (the receipt time of the data they carry)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, datetime]] = asyncio.Queue(maxsize=1024)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a flood is dropped, never buffered unbounded
            self.queue.put_nowait((data, datetime.now(UTC)))


class _AssociationLost(Exception):
    pass


class IntellivueClient:
    def __init__(self, host: str, port: int, profile: Profile, *, on_poll: PollCallback,
                 on_status: StatusCallback, on_error: ErrorCallback | None = None,
                 waves: bool = True, poll_interval_s: float | None = None, keepalive_s: float = 3.0,
                 stale_timeout_s: float | None = None, clock_drift_limit_s: float | None = None,
                 site_tz: str = "UTC", backoff_s: tuple[float, float] = (0.5, 30.0),
                 reply_timeout_s: float = 2.0) -> None:
        if not isinstance(profile.transport, IntellivueUdpTransport):
            raise ValueError(f"profile {profile.id} is not an intellivue-udp profile")
        self.host, self.port, self.profile = host, port, profile
        self.poll_interval = poll_interval_s or profile.transport.poll_interval_s
        self.stale_timeout = stale_timeout_s or profile.timing.stale_timeout_s
        self.drift_limit = clock_drift_limit_s or profile.timing.clock_drift_limit_s
        self.waves, self.keepalive_s, self.reply_timeout = waves, keepalive_s, reply_timeout_s
        self.tz = ZoneInfo(site_tz)
        self._on_poll, self._on_status, self._on_error = on_poll, on_status, on_error
        self._backoff = backoff_s
        self._stop = asyncio.Event()
        self._invoke = 0
        self._poll_number = 0
        self._parts: dict[int, tuple[PollResult, datetime]] = {}
        self._rx_at = datetime.now(UTC)  # arrival of the datagram ``_receive`` returned last
        self._drifting = False
        self._last_status: Status | None = None
        self.session: MonitorSession | None = None
        self.associations = 0
        self.polls = 0

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def device_id(self) -> str | None:
        return self.session.mds.system_id if self.session else None

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Associate and poll until :meth:`stop`; never raises for device or network trouble."""
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(_Datagrams, remote_addr=(self.host, self.port))
        delay = self._backoff[0]
        try:
            while not self._stop.is_set():
                try:
                    await self._associate(transport, proto.queue)
                    delay = self._backoff[0]
                    await self._poll_loop(transport, proto.queue)
                except _AssociationLost as exc:
                    await self._status("disconnected", str(exc))
                    await self._sleep(delay)
                    delay = min(delay * 2, self._backoff[1])
                except OSError as exc:  # e.g. ICMP port unreachable surfaced on the socket
                    await self._status("disconnected", f"network error: {exc}")
                    await self._sleep(delay)
                    delay = min(delay * 2, self._backoff[1])
        finally:
            transport.close()

    # -- association ----------------------------------------------------------------------

    async def _associate(self, transport: asyncio.DatagramTransport,
                         queue: asyncio.Queue[tuple[bytes, datetime]]) -> None:
        self.session, self._parts = None, {}
        transport.sendto(association_request(min_poll_ms=125.0))
        deadline = time.monotonic() + self.reply_timeout
        accepted = False
        while self.session is None:
            msg = await self._receive(queue, deadline)
            if msg is None:
                raise _AssociationLost("no association response" if not accepted else "no MDS create event")
            if isinstance(msg, AssociationResult):
                if not msg.accepted:
                    raise _AssociationLost(msg.reason or "association refused")
                accepted = True
            elif isinstance(msg, MdsCreateEvent) and accepted:
                transport.sendto(mds_create_result(msg.invoke_id, msg.managed_object))
                self.session = MonitorSession(msg, datetime.now(UTC))
                self.associations += 1
                await self._status("connected", f"associated (model {msg.model})")
                await self._check_clock(msg.device_time)

    async def _receive(self, queue: asyncio.Queue[tuple[bytes, datetime]], deadline: float) -> object | None:
        """The next decodable message before ``deadline`` (None on timeout)."""
        while (left := deadline - time.monotonic()) > 0:
            if queue.empty():
                try:
                    raw, at = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    return None
            else:  # already here: no timer, no task
                raw, at = queue.get_nowait()
            try:
                msg = decode_message(raw)
                self._rx_at = at
                return msg
            except IntellivueDecodeError as exc:
                log.warning("intellivue %s: undecodable datagram: %s", self.endpoint, exc.reason)
                if self._on_error is not None:
                    await self._on_error(raw, exc.reason)
        return None

    # -- polling --------------------------------------------------------------------------

    async def _poll_loop(self, transport: asyncio.DatagramTransport,
                         queue: asyncio.Queue[tuple[bytes, datetime]]) -> None:
        last_rx = last_tx = time.monotonic()
        next_poll = last_tx
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_poll:
                codes = (NOM_MOC_VMO_METRIC_NU, NOM_MOC_VMO_METRIC_SA_RT) if self.waves else (NOM_MOC_VMO_METRIC_NU,)
                for code in codes:
                    transport.sendto(poll_request(self._next_invoke(), self._next_poll(), code))
                last_tx = now
                next_poll = max(next_poll + self.poll_interval, now)
            elif now - last_tx >= self.keepalive_s:
                transport.sendto(keep_alive_request(self._next_invoke()))
                last_tx = now
            msg = await self._receive(queue, min(next_poll, last_tx + self.keepalive_s))
            if msg is None:
                if time.monotonic() - last_rx > self.stale_timeout:
                    await self._status("silent", f"no reply for {time.monotonic() - last_rx:.1f} s")
                    raise _AssociationLost("monitor silent: re-associating")
                continue
            last_rx = time.monotonic()
            await self._dispatch(msg, transport)

    async def _dispatch(self, msg: object, transport: asyncio.DatagramTransport) -> None:
        if isinstance(msg, SessionEnd):
            raise _AssociationLost(f"monitor sent {msg.kind}")
        if isinstance(msg, AssociationResult):
            return  # a late duplicate accept
        if isinstance(msg, MdsCreateEvent):  # the monitor re-sent it: confirm again
            transport.sendto(mds_create_result(msg.invoke_id, msg.managed_object))
            return
        if isinstance(msg, KeepAliveResult):
            await self._check_clock(msg.device_time)
            return
        if isinstance(msg, PollResult):
            await self._poll_part(msg)

    async def _poll_part(self, part: PollResult) -> None:
        held = self._parts.pop(part.invoke_id, None)
        received = self._rx_at  # a linked reply was received when its first part arrived
        if held is not None:
            first, received = held
            part = replace(first, numerics=first.numerics + part.numerics, waves=first.waves + part.waves,
                           linked=part.linked)
        if not part.last_part:
            self._parts[part.invoke_id] = (part, received)
            return
        self.polls += 1
        if self._last_status == "silent":
            await self._status("responding", "replies resumed")
        await self._check_clock(part.device_time)
        assert self.session is not None
        await self._on_poll(self.session, part, received)

    async def _check_clock(self, device_time: datetime | None) -> None:
        if device_time is None or self.drift_limit is None:
            return
        local = device_time.replace(tzinfo=self.tz)  # the monitor's clock carries no zone
        drift = (local - datetime.now(UTC)).total_seconds()
        drifting = abs(drift) > self.drift_limit
        if drifting != self._drifting:
            self._drifting = drifting
            status: Status = "clock-drift" if drifting else "clock-ok"
            await self._status(status, f"monitor clock off by {drift:+.1f} s (limit {self.drift_limit:g} s)",
                               drift_s=drift)

    async def _status(self, status: Status, reason: str, drift_s: float | None = None) -> None:
        if status == "disconnected" and self._last_status == "disconnected":
            return  # one event per outage, not one per retry
        if status not in ("clock-drift", "clock-ok"):
            self._last_status = status
        await self._on_status(DeviceStatusEvent(self.endpoint, self.device_id, status, datetime.now(UTC),
                                                reason, drift_s))

    def _next_invoke(self) -> int:
        self._invoke = (self._invoke + 1) & 0xFFFF
        return self._invoke

    def _next_poll(self) -> int:
        self._poll_number = (self._poll_number + 1) & 0xFFFF
        return self._poll_number

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


async def discover_monitors(listen: tuple[str, int] = ("0.0.0.0", 24005), seconds: float = 5.0
                            ) -> dict[str, ConnectIndication]:
    """Listen for monitors' Connect Indication broadcasts; system id -> indication.

    Monitors announce themselves every few seconds on UDP 24005 with their address and
    association port; this is how an operator finds the ``intellivue@host:port`` endpoints.
    Anything else received on the port is ignored.
    """
    proto = _Datagrams()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=listen, allow_broadcast=True)
    found: dict[str, ConnectIndication] = {}
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw, _ = await asyncio.wait_for(proto.queue.get(), left)
            except TimeoutError:
                break
            with contextlib.suppress(IntellivueDecodeError):
                msg = decode_message(raw)
                if isinstance(msg, ConnectIndication):
                    found[msg.system_id] = msg
    finally:
        transport.close()
    return found
