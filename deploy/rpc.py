"""Run a compiled library on a board registered with a TVM RPC tracker.

The library (cross-compiled for the board) is uploaded, loaded into a Relax
VM on the board and timed there with TVM's time evaluator; the outputs of
the given inputs come back for a parity check. The board is looked up
first (:func:`deploy.tracker.check_board`).
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

from deploy.errors import RemoteError
from deploy.latency import LatencyStats, latency_stats, runs_per_sample
from deploy.tracker import check_board, parse_tracker, tracker_keys
from search_spaces.errors import one_line

__all__ = ["RemoteResult", "local_board", "run_remote"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteResult:
    key: str
    latency: LatencyStats
    outputs: np.ndarray  # logits of the inputs, N x classes (the first output)
    all_outputs: tuple[np.ndarray, ...] = ()  # every output of the model, in order


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
        raise RemoteError(f"board {key!r} at {tracker} failed to run {Path(library).name} ({one_line(exc)})") from None


def _request(tracker: str, key: str, timeout_s: float):
    from tvm import rpc

    host, port = parse_tracker(tracker)
    try:
        return rpc.connect_tracker(host, port).request(key, priority=1, session_timeout=timeout_s, max_retry=2)
    except (OSError, RuntimeError) as exc:
        raise RemoteError(f"cannot get a session for key {key!r} from {tracker} ({one_line(exc)})") from None


def _run(session, library: Path, *, key: str, inputs: np.ndarray, device: str, repeats: int, min_ms: float):
    import tvm
    from tvm import relax

    session.upload(str(library))
    remote_lib = session.load_module(library.name)
    dev = session.cuda(0) if device == "cuda" else session.cpu(0)
    vm = relax.VirtualMachine(remote_lib, dev)
    outputs = []
    for sample in np.asarray(inputs, dtype=np.float32):
        # A remote tuple cannot be indexed from here; get_outputs fetches each output of a stateful call.
        vm.set_input("main", tvm.runtime.tensor(np.ascontiguousarray(sample[None]), dev))
        vm.invoke_stateful("main")
        result = vm.get_outputs("main")
        outputs.append([value.numpy() for value in (result if isinstance(result, tuple) else [result])])
    x = tvm.runtime.tensor(np.ascontiguousarray(inputs[:1], dtype=np.float32), dev)
    number = runs_per_sample(lambda: vm["main"](x), min_ms)  # includes the round trip: an upper bound
    evaluator = vm.time_evaluator("main", dev, number=number, repeat=repeats)
    samples = tuple(float(s) * 1e3 for s in evaluator(x).results)
    latency = latency_stats(samples, runtime=f"tvm-rpc:{key}", num_threads=0)
    every = tuple(np.concatenate(values, axis=0) for values in zip(*outputs))
    return RemoteResult(key=key, latency=latency, outputs=every[0], all_outputs=every)


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
    # Both start at once (each spends seconds importing TVM): the server retries the tracker until it is up.
    processes = [_spawn(tracker_cmd), _spawn(server_cmd)]
    try:
        _wait_for(lambda: _tracker_up(address), timeout_s, f"RPC tracker at {address} did not start")
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
