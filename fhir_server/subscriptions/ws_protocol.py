"""uvicorn's websocket protocol plus a synchronous frame writer for notification fan-outs.

Through ASGI, a notification to one socket costs a Starlette send, uvicorn's send, the
websockets library's framing and, when the client asked for it, a permessage-deflate
compression: ~50 us of Python per socket on the node's cores before the socket write
itself, 1,000 of them in a row for a 1,000-way fan-out (measured: ~110 us a socket, the
last of 1,000 written 90-180 ms after the first). This protocol gives the subscription
endpoint (through the connection's ASGI scope, ``scope["extensions"][FRAMES]``) a way to
write a whole text frame straight to the transport: a server frame is not masked, so the
frame of a notification is built once, whatever number of sockets it goes to.

It writes only where uvicorn's own ``websocket.send`` would write at once: handshake done,
no close sent or received, transport not paused. Anything else (and an ASGI server
without this protocol) goes the ordinary awaited way.

The node runs uvicorn with ``ws=SubscriptionWebSocketProtocol`` and
``ws_per_message_deflate=False`` (``NODE_WS_CONFIG``): notifications of a few kB on the
ward network are not worth a compression per subscriber at the node and a decompression
at each client; a client that still negotiated compression is written through its own
compressor.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

FRAMES = "vitalgate.websocket.frames"

# What the node passes to ``uvicorn.Config`` (gateway/app.py; bench/subscriptions.py measures the same).
NODE_WS_CONFIG: dict[str, Any] = {"ws": "fhir_server.subscriptions.ws_protocol:SubscriptionWebSocketProtocol",
                                  "ws_per_message_deflate": False}


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 5.2): what a server writes."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


class SubscriptionWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # set only for an accepted upgrade; its ASGI task has not run yet
            scope["extensions"][FRAMES] = self

    def can_write(self) -> bool:
        return (self.handshake_complete and self.initial_response is None and not self.close_sent
                and not self.disconnected and self.writable.is_set() and not self.transport.is_closing()
                and self.conn.state is State.OPEN)

    def write_text(self, payload: bytes, frame: bytes) -> None:
        """Write ``payload`` as one text frame now; ``frame`` is ``text_frame(payload)``, used as
        it is unless the connection negotiated an extension (compression). Only after
        ``can_write()``."""
        if self.conn.extensions:
            self.conn.send_text(payload)
            self.transport.write(b"".join(self.conn.data_to_send()))
        else:
            self.transport.write(frame)
