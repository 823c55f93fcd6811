"""Run a compiled library on a board registered with a TVM RPC tracker.

The library (cross-compiled for the board) is uploaded, loaded into a Relax
VM on the board and timed there with TVM's time evaluator; the outputs of
the given inputs come back for a parity check. A key no server has
registered is an error listing the keys the tracker knows, rather than a
request that waits forever.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.benchmark import LatencyStats, latency_stats, runs_per_sample
from deploy.errors import RemoteError

__all__ = ["RemoteResult", "check_board", "local_board", "parse_tracker", "run_remote", "tracker_keys"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteResult:
    key: str
    latency: LatencyStats
    outputs: np.ndarray  # logits of the inputs, N x classes


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
        raise RemoteError(f"cannot reach the RPC tracker at {address} ({_one_line(exc)})") from None
    return sorted({info["key"].split(":")[1] for info in summary.get("server_info", []) if ":" in info["key"]})


def check_board(tracker: str, key: str) -> None:
    """Raise unless a server with ``key`` is registered at ``tracker`` (a request would wait forever)."""
    keys = tracker_keys(tracker)
    if key not in keys:
        raise RemoteError(f"no board with key {key!r} is registered at {tracker}; registered keys: {keys or 'none'}")


def run_remote(
    library: str | Path,
    *,
    tracker: str,
    key: str,
    inputs: np.ndarray,
    device: str = "cpu",
    repeats: int = 20,
    min_sample_ms: float = 20.0,
    session_timeout_s: float = 120.0,
) -> RemoteResult:
    """Upload ``library``, run ``inputs`` (N x C x H x W, one at a time) and time batch-1 inference."""
    check_board(tracker, key)
    session = _request(tracker, key, session_timeout_s)
    options = {"key": key, "device": device, "repeats": repeats, "min_ms": min_sample_ms}
    try:
        return _run(session, Path(library), inputs=inputs, **options)
    except (RuntimeError, OSError) as exc:
        raise RemoteError(f"board {key!r} at {tracker} failed to run {Path(library).name} ({_one_line(exc)})") from None


def _check_reachable(host: str, port: int, address: str) -> None:
    """Fail in seconds: TVM's own client retries a refused connection for a minute."""
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        raise RemoteError(f"cannot reach the RPC tracker at {address} ({_one_line(exc)})") from None


def _request(tracker: str, key: str, timeout_s: float):
    from tvm import rpc

    host, port = parse_tracker(tracker)
    try:
        return rpc.connect_tracker(host, port).request(key, priority=1, session_timeout=timeout_s, max_retry=2)
    except (OSError, RuntimeError) as exc:
        raise RemoteError(f"cannot get a session for key {key!r} from {tracker} ({_one_line(exc)})") from None


def _run(session, library: Path, *, key: str, inputs: np.ndarray, device: str, repeats: int, min_ms: float):
    import tvm
    from tvm import relax

    session.upload(str(library))
    remote_lib = session.load_module(library.name)
    dev = session.cuda(0) if device == "cuda" else session.cpu(0)
    vm = relax.VirtualMachine(remote_lib, dev)
    outputs = []
    for sample in np.asarray(inputs, dtype=np.float32):
        result = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(sample[None]), dev))
        outputs.append((result if hasattr(result, "numpy") else result[0]).numpy())
    x = tvm.runtime.tensor(np.ascontiguousarray(inputs[:1], dtype=np.float32), dev)
    number = runs_per_sample(lambda: vm["main"](x), min_ms)  # includes the round trip: an upper bound
    evaluator = vm.time_evaluator("main", dev, number=number, repeat=repeats)
    samples = tuple(float(s) * 1e3 for s in evaluator(x).results)
    latency = latency_stats(samples, runtime=f"tvm-rpc:{key}", num_threads=0)
    return RemoteResult(key=key, latency=latency, outputs=np.concatenate(outputs, axis=0))


@contextmanager
def local_board(*, key: str = "local", timeout_s: float = 60.0) -> Iterator[str]:
    """A TVM RPC tracker and one server (this host as a "board" named ``key``) on 127.0.0.1.

    Yields the tracker's ``HOST:PORT``; both processes are stopped on exit. For tests and for
    trying ``--rpc-tracker`` without a board.
    """
    tracker_port, server_port = _free_port(), _free_port()
    address = f"127.0.0.1:{tracker_port}"
    tracker_cmd = ["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(tracker_port)]
    tracker_cmd += ["--port-end", str(tracker_port + 1), "--silent"]
    server_cmd = ["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(server_port)]
    server_cmd += ["--port-end", str(server_port + 1), "--tracker", address, "--key", key, "--silent"]
    processes = [_spawn(tracker_cmd)]
    try:
        _wait_for(lambda: _tracker_up(address), timeout_s, f"RPC tracker at {address} did not start")
        processes.append(_spawn(server_cmd))
        _wait_for(lambda: key in tracker_keys(address), timeout_s, f"RPC server {key!r} did not register")
        logger.info("local RPC board %r at tracker %s", key, address)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)


def _spawn(args: list[str]) -> subprocess.Popen:
    # A session of the server runs in a forked child: a new process group lets _stop end both.
    return subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    else:  # the leader is gone; its forked session children may not be
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tracker_up(address: str) -> bool:
    try:
        tracker_keys(address)
    except RemoteError:
        return False
    return True


def _wait_for(ready, timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise RemoteError(f"{message} within {timeout_s:.0f} s")
        time.sleep(0.3)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
