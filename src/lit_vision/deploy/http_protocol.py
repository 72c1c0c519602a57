"""uvicorn's h11 HTTP protocol with the two refusals a public service needs and uvicorn lacks.

* **431** for request headers over :data:`MAX_HEADER_BYTES`. uvicorn answers 400 and closes the socket at once,
  while the client is still sending its headers; the kernel then resets the connection and the client sees a reset
  instead of an answer. Here the answer names the limit, the write side is shut, and what the client still sends is
  read and dropped for :data:`LINGER_S` before the socket closes (a "lingering close", as Apache and nginx do).
* **408** for a request that stops arriving: headers or a body shorter than its ``Content-Length`` with nothing
  received for ``request_timeout`` seconds. uvicorn waits for the rest as long as the client keeps the connection
  open, so a few slow or stalled clients could hold every connection of the service.

Both answers are written as raw bytes (a 408 may be due before h11 has a request to answer) and wake the
application's request cycle as a disconnect, so an endpoint waiting for the body returns.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: request line and headers together (h11's own default is 16 KiB)
MAX_HEADER_BYTES = 64 * 1024
#: seconds without a byte of an unfinished request before it is answered 408
REQUEST_TIMEOUT_S = 15.0
#: seconds a refused connection is drained before it closes
LINGER_S = 2.0

REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


def refusal(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response with a JSON ``{"error": message}`` body that closes the connection."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class GuardedH11Protocol(H11Protocol):
    """:class:`H11Protocol` answering 431 and 408 (module docstring); pass it as ``uvicorn.run(http=...)``."""

    request_timeout: float = REQUEST_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining a refused connection
        self._wait_for_more()
        super().data_received(data)
        if self._refused or not self._unfinished():
            self._stop_waiting()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse: 431 when the headers outgrew the limit, else 400."""
        if self.conn.their_state is h11.ERROR and len(self.conn.trailing_data[0]) > MAX_HEADER_BYTES:
            self._refuse(431, f"the request's headers are over the {MAX_HEADER_BYTES:,}-byte limit")
        else:
            super().send_400_response(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _unfinished(self) -> bool:
        """Has part of a request arrived, and not the rest? (An idle keep-alive connection is uvicorn's to close.)"""
        if self.conn.their_state is h11.SEND_BODY:
            return True
        return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _wait_for_more(self) -> None:
        self._stop_waiting()
        self._timer = self.loop.call_later(self.request_timeout, self._timed_out)

    def _stop_waiting(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.flow is not None and self.flow.read_paused:  # the app has not taken the body yet: not the client's
            self._wait_for_more()
        elif self._unfinished() and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._refuse(408, f"the request was incomplete and nothing more arrived for {self.request_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._stop_waiting()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the endpoint's next receive() is a disconnect; its answer is dropped
            self.cycle.message_event.set()
        self.transport.write(refusal(status, message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.transport.resume_reading()
        self.loop.call_later(LINGER_S, self.transport.close)


def guarded_protocol(request_timeout: float | None = None) -> type[GuardedH11Protocol]:
    """:class:`GuardedH11Protocol` answering 408 after ``request_timeout`` seconds (None: :data:`REQUEST_TIMEOUT_S`)."""
    if request_timeout is None:
        return GuardedH11Protocol
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"request_timeout": float(request_timeout)})
