"""In-flight markers: how pushes and remote gcs on one remote keep out of each other's way.

A push uploads objects before it moves refs, and skips the objects the remote already holds;
between its existence check and its ref update those objects are reachable from nothing on
the remote, so a remote gc could take them. Each side announces itself with a small marker
object, ``<root>/inflight/push-<id>`` or ``<root>/inflight/gc-<id>`` (JSON naming the host,
pid and time, for people), kept fresh by a heartbeat while it works and removed when done:

- a **push** writes its marker, *then* lists the markers, and waits while a live gc marker is
  there, before it asks the remote which objects it holds; its marker goes only after its refs
  moved;
- a **remote gc** writes its marker, *then* lists the markers, and deletes nothing when it sees
  a live push marker.

Each writes before it reads (with the read-after-write consistency of a filesystem and of S3),
so of a push and a gc that overlap at least one sees the other: either the push waits for the
gc, or the gc leaves everything alone. A marker not refreshed for :data:`MARKER_TIMEOUT`
seconds (by the remote's clock: the marker's mtime or ``LastModified``) belongs to a killed
process and is ignored (and removed by the next gc). Times are always the remote's: "now" is
the time of the marker just written, so clock skew between machines does not matter.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from mgit.errors import MgitError, RemoteError, RemoteRetryWarning
from mgit.remote.protocol import MaintainedTransport, Marker

__all__ = [
    "GC_WAIT",
    "HEARTBEAT",
    "MARKER_TIMEOUT",
    "Announcement",
    "announce",
    "live_markers",
    "wait_for_gc",
]

#: Seconds after its last refresh when a marker is considered dead (its writer was killed).
MARKER_TIMEOUT = 1800.0
#: Seconds between two refreshes of a live marker.
HEARTBEAT = 60.0
#: Seconds a push waits for a running remote gc to finish before it gives up.
GC_WAIT = 600.0


class Announcement:
    """A marker written on a remote, refreshed by a daemon thread until :meth:`close`.

    Attributes:
        name: ``push-<32 hex>`` or ``gc-<32 hex>``.
        now: When the marker was written, by the remote's clock (None when the listing did
            not show it: then callers use their own clock).
    """

    def __init__(self, transport: MaintainedTransport, kind: str, *, heartbeat: float) -> None:
        self.transport = transport
        self.name = f"{kind}-{uuid.uuid4().hex}"
        self.now: float | None = None
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _payload(self) -> bytes:
        return (
            json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
            + "\n"
        ).encode()

    def open(self) -> list[Marker]:
        """Write the marker, start the heartbeat, and return the markers listed *after* it."""
        self.transport.write_marker(self.name, self._payload())
        self._thread = threading.Thread(
            target=self._beat, name=f"mgit-{self.name[:8]}", daemon=True
        )
        self._thread.start()
        markers = self.transport.list_markers()
        self.now = next((m.mtime for m in markers if m.name == self.name), None)
        return markers

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat):
            try:
                self.transport.write_marker(self.name, self._payload())
            except MgitError:
                pass  # the next beat tries again; a marker that ages out only makes gc wait

    def close(self) -> None:
        """Stop the heartbeat and remove the marker (best effort: a leftover ages out)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.transport.delete_marker(self.name)
        except MgitError:
            pass


@contextmanager
def announce(
    transport: MaintainedTransport, kind: str, *, heartbeat: float = HEARTBEAT
) -> Iterator[tuple[Announcement, list[Marker]]]:
    """Hold a ``kind`` marker on ``transport`` for the block: yields the announcement and the
    markers listed just after it was written.

    Raises:
        RemoteError: The marker cannot be written or the markers listed.
    """
    ann = Announcement(transport, kind, heartbeat=heartbeat)
    try:
        markers = ann.open()
        yield ann, markers
    finally:
        ann.close()


def live_markers(
    markers: list[Marker],
    now: float,
    *,
    kind: str,
    exclude: str = "",
    timeout: float = MARKER_TIMEOUT,
) -> list[Marker]:
    """The markers of ``kind`` refreshed within ``timeout`` seconds before ``now`` (``exclude``:
    one's own)."""
    return [m for m in markers if m.kind == kind and m.name != exclude and m.mtime > now - timeout]


def wait_for_gc(
    transport: MaintainedTransport,
    ann: Announcement,
    markers: list[Marker],
    *,
    timeout: float = MARKER_TIMEOUT,
    wait: float | None = None,
) -> None:
    """Return once no live gc marker is on the remote (the push's own marker is already there,
    so a gc starting now sees it and deletes nothing).

    Args:
        transport: The remote.
        ann: The push's own marker.
        markers: The markers listed just after it was written.
        timeout: Seconds without a heartbeat after which a gc marker is dead.
        wait: Seconds to wait at most (default :data:`GC_WAIT`).

    Raises:
        RemoteError: A gc is still running after ``wait`` seconds.
    """
    deadline = time.monotonic() + (GC_WAIT if wait is None else wait)
    delay = 0.05
    warned = False
    while True:
        # The remote's clock: the latest refresh seen (our own heartbeat keeps it moving).
        now = max([ann.now if ann.now is not None else time.time()] + [m.mtime for m in markers])
        running = live_markers(markers, now, kind="gc", timeout=timeout)
        if not running:
            return
        if time.monotonic() >= deadline:
            raise RemoteError(
                f"a gc is running on {transport.url} ({running[0].name})",
                hint="run the push again when it is done; a gc killed meanwhile stops counting "
                f"{MARKER_TIMEOUT / 60:.0f} minutes after its last heartbeat",
            )
        if not warned:
            warnings.warn(
                RemoteRetryWarning(f"{transport.url}: waiting for the remote's gc to finish"),
                stacklevel=3,
            )
            warned = True
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
        markers = transport.list_markers()
