"""A TVM RPC tracker's address, and which boards (device keys) are registered with it.

Both deploy's board runs and MetaSchedule's RPC tuning ask this first: a key no
server has registered is an error listing the keys the tracker knows, rather
than a request that waits forever.
"""

from __future__ import annotations

import socket

from deploy.errors import RemoteError
from search_spaces.errors import one_line

__all__ = ["check_board", "parse_tracker", "tracker_keys"]


def parse_tracker(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RemoteError(f"--rpc-tracker must be HOST:PORT, but got {address!r}")
    return host, int(port)


def tracker_keys(address: str) -> list[str]:
    """Device keys that have at least one server registered with the tracker."""
    host, port = parse_tracker(address)
    _check_reachable(host, port, address)
    from tvm import rpc

    try:
        summary = rpc.connect_tracker(host, port).summary()
    except (OSError, RuntimeError) as exc:
        raise RemoteError(f"cannot reach the RPC tracker at {address} ({one_line(exc)})") from None
    return sorted({info["key"].split(":")[1] for info in summary.get("server_info", []) if ":" in info["key"]})


def check_board(tracker: str, key: str) -> None:
    """Raise unless a server with ``key`` is registered at ``tracker`` (a request would wait forever)."""
    keys = tracker_keys(tracker)
    if key not in keys:
        raise RemoteError(f"no board with key {key!r} is registered at {tracker}; registered keys: {keys or 'none'}")


def _check_reachable(host: str, port: int, address: str) -> None:
    """Fail in seconds: TVM's own client retries a refused connection for a minute."""
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        raise RemoteError(f"cannot reach the RPC tracker at {address} ({one_line(exc)})") from None
