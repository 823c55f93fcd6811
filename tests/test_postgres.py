"""Many workers on one PostgreSQL study, for real: a server on loopback, worker processes, a SIGKILL.

The server comes from ``$EDGENAS_TEST_POSTGRES_URL`` (``.ci/run`` starts one
with ``.ci/postgres.sh``), or else this module runs ``.ci/postgres.sh``
itself; where no server can be started every test here is skipped with the
reason. One worker runs as another machine (its own host name, through
``unshare --uts``), so that only Optuna's heartbeat, not the same-host
liveness check, can notice that it died.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages import RetryFailedTrialCallback
from optuna.trial import TrialState

from nas.search.counting import tally
from nas.search.storage_url import resolve_rdb_url, storage_secrets

REPO = Path(__file__).resolve().parents[1]
OTHER_HOST = "edgenas-test-other-machine"
TINY_SPACE = """\
name: tiny
description: a few dozen small networks that train in about a second on 16x16 digits
parallelism_factor: 32
align_channels: false
input: {channels: 1, resolution: [16]}
depth_multiplier: [1.0]
activation: relu6
stem: {kernel: [3], channels: [8, 16], stride: 1}
stages:
  - {block: [ibn, fused_ibn], kernel: [3], expansion: [2], channels: [8, 16], depth: [1], stride: 2}
  - {block: [ibn, fused_ibn], kernel: [3], expansion: [2], channels: [16, 24], depth: [1, 2], stride: 2}
head: {type: classification, channels: [32], num_classes: 10}
"""
TRIALS = 9
WORKER = """
from nas.search import run_search
run_search(space={space!r}, device="sim-npu-p32", dataset="digits", study={study!r}, trials={trials},
           strategy="random", mode="multishot", epochs=2, train_limit=384, batch_size=16, pruner="none",
           baseline=False, heartbeat_s=1, seed={seed}, storage={url!r}, results_dir={results!r})
"""


@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = os.environ.get("EDGENAS_TEST_POSTGRES_URL")
    if not url:
        started = subprocess.run(
            ["bash", str(REPO / ".ci" / "postgres.sh")], capture_output=True, text=True, timeout=300, check=False
        )
        url = started.stdout.strip()
        if started.returncode != 0 or not url:
            reason = started.stderr.strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"no PostgreSQL server could be started by .ci/postgres.sh: {reason[0]}")
    return url


def _other_machine_prefix() -> list[str]:
    """A command prefix that runs a process under another host name, or a skip reason."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs util-linux's unshare to run a worker as another machine")
    probe = subprocess.run([unshare, "--uts", "sh", "-c", f"hostname {OTHER_HOST}"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"unshare --uts is not permitted here ({probe.stderr.decode().strip()}); it needs root")
    return [unshare, "--uts", "sh", "-c", f'hostname {OTHER_HOST} && exec "$0" "$@"']


def _load(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=resolve_rdb_url(url)).trials


def _other_machine_trains(trial: optuna.trial.FrozenTrial) -> bool:
    """The other-machine worker trains ``trial``: its latency is known and no outcome is recorded yet (an outcome is
    written when the training has ended, before the trial is finished)."""
    return (
        trial.state == TrialState.RUNNING
        and "latency_ms" in trial.user_attrs
        and "outcome" not in trial.user_attrs
        and trial.user_attrs.get("worker", {}).get("host") == OTHER_HOST
    )


def _stop_mid_trial(url: str, study: str, process: subprocess.Popen, timeout_s: float = 90.0) -> int:
    """Freeze the other-machine worker (SIGSTOP) while it trains a trial, after another trial has finished.

    The trial it trains is read again once the worker is frozen: a frozen worker cannot finish it, so the
    SIGKILL that follows surely lands mid-training. Where the training ended between the look and the freeze
    (the trial has its ``outcome``, even if not yet finished), the worker goes on (SIGCONT) and the next trial
    is tried. Returns the number of the trial it was frozen in.
    """
    storage = optuna.storages.RDBStorage(resolve_rdb_url(url))
    deadline = time.monotonic() + timeout_s
    study_id = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            study_id = study_id if study_id is not None else storage.get_study_id_from_name(study)
        except KeyError:
            time.sleep(0.1)  # the study is not created yet
            continue
        trials = storage.get_all_trials(study_id, deepcopy=False)
        busy = [t for t in trials if _other_machine_trains(t)]
        if busy and any(t.state.is_finished() for t in trials):
            process.send_signal(signal.SIGSTOP)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, busy[0].number)
            if _other_machine_trains(storage.get_trial(trial_id)):
                return busy[0].number
            process.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the other-machine worker never started training a trial in time")


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_three_workers_one_killed_complete_the_study_with_no_trial_lost_or_duplicated(
    tmp_path, postgres_url, small_sim_estimators
):
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    study = f"pg-{uuid.uuid4().hex[:8]}"
    results = tmp_path / "results"
    env = {**os.environ, "EDGENAS_ESTIMATORS": str(small_sim_estimators), "PYTHONPATH": str(REPO)}
    prefix = _other_machine_prefix()
    workers = []
    for seed in range(3):
        code = WORKER.format(
            space=str(space), study=study, trials=TRIALS, seed=seed, url=postgres_url, results=str(results)
        )
        command = [*(prefix if seed == 0 else []), sys.executable, "-c", code]
        workers.append(subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True))
    try:
        killed = _stop_mid_trial(postgres_url, study, workers[0])
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        errors = [worker.communicate(timeout=120)[1] for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [w.returncode for w in workers[1:]] == [0, 0], "\n".join(errors[1:])
    assert workers[0].returncode == -signal.SIGKILL

    trials = _load(postgres_url, study)
    dead = trials[killed]
    # Only the heartbeat can have failed it: the liveness check trusts only processes of its own host.
    assert dead.state == TrialState.FAIL and dead.user_attrs["worker"]["host"] == OTHER_HOST
    assert "outcome" not in dead.user_attrs
    retries = [t for t in trials if RetryFailedTrialCallback.retried_trial_number(t) == killed]
    assert len(retries) == 1, "the dead worker's trial is retried exactly once"
    (retry,) = retries
    assert retry.params == dead.params and retry.state == TrialState.COMPLETE
    assert RetryFailedTrialCallback.retry_history(retry) == [killed]
    assert retry.user_attrs["worker"]["host"] != OTHER_HOST

    # Nothing lost: no trial left RUNNING or WAITING. Nothing duplicated: exactly the target counted.
    assert [t.number for t in trials if not t.state.is_finished()] == []
    study_obj = optuna.load_study(study_name=study, storage=resolve_rdb_url(postgres_url))
    counts = tally(trials)
    assert counts.evaluated == TRIALS
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [killed]
    # Besides the killed trial, every trial is an evaluation or free: a duplicate, or SURPLUS (a claim that the
    # other workers had filled), pruned unevaluated.
    surplus = [t for t in trials if t.user_attrs.get("outcome") == "SURPLUS"]
    assert all(t.state == TrialState.PRUNED and "val_accuracy" not in t.user_attrs for t in surplus)
    assert len({t.number for t in trials}) == len(trials) == counts.proposals + 1 + len(surplus)
    assert counts.proposals == TRIALS + counts.duplicates
    fidelity = optuna.load_study(study_name=f"{study}.fidelity", storage=resolve_rdb_url(postgres_url))
    assert not [t.number for t in fidelity.trials if t.state == TrialState.RUNNING]

    # No secret anywhere we wrote: result files, the worker logs, the study's own attributes.
    secrets = storage_secrets(postgres_url)
    assert secrets, "the test server's URL has a password"
    written = [p for p in results.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"trials.csv", "report.md", "pareto.json"}
    for path in written:
        data = path.read_bytes()
        assert not any(s.encode() in data for s in secrets), f"{path} holds the database password"
    assert not any(s in e for s in secrets for e in errors)
    assert not any(s in json.dumps(study_obj.user_attrs) for s in secrets)
    assert "***@" in json.loads((results / study / "pareto.json").read_text())["settings"]["storage"]
