"""Faults that must stop, not spin: a full disk stops the job at once (and it resumes), a transient
write error is retried with the progress bar counting each part once, Ctrl-C or SIGTERM stops the
job and its cluster, and a killed driver's leftover processes are ended by the next run."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

zarr = pytest.importorskip("zarr")

import jobs.score.step as writer  # noqa: E402  (the step calls write_part by the name it imported)
from jobs.score import JobStopped, run_job  # noqa: E402
from tests.support import HANG_S, hang_guard, job_config, wait_until  # noqa: E402


def _failing_write(monkeypatch, part: int, err: OSError, times: int):
    real, calls = writer.write_part, []

    def write_part(location, k, *args, **kw):
        calls.append(k)
        if k == part and calls.count(k) <= times:
            raise err
        return real(location, k, *args, **kw)

    monkeypatch.setattr(writer, "write_part", write_part)
    return calls


def test_a_full_disk_stops_the_job_at_once_and_the_store_resumes(tmp_path, tiny_model_dir, texts_jsonl, monkeypatch):
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), background_writes=True)
    calls = _failing_write(monkeypatch, 1, OSError(errno.ENOSPC, "No space left on device"), times=99)
    with pytest.raises(JobStopped) as stopped:
        run_job(cfg)
    message = str(stopped.value)
    assert "\n" not in message and "No space left on device" in message and cfg.out in message
    assert "free space there, then rerun the same command to resume" in message
    assert calls == [0, 1]  # part 1 tried once, part 2 (scored while part 1 was written) never written
    monkeypatch.undo()
    s = run_job(cfg)
    assert s.parts_run == 2 and s.exit_code == 0 and s.examples == 5


def test_a_transient_write_error_is_retried_and_each_part_counted_once(
    tmp_path, tiny_model_dir, texts_jsonl, monkeypatch, capsys
):
    calls = _failing_write(monkeypatch, 1, OSError(errno.ECONNRESET, "Connection reset by peer"), times=1)
    cfg = job_config(tmp_path, tiny_model_dir, texts_jsonl, methods=("attention",), progress=True)
    s = run_job(cfg.replace(background_writes=True))  # on GPUs by default; here on the CPU
    # Part 2 is scored while part 1 is written, so its write goes out before part 1 is redone.
    assert calls == [0, 1, 2, 1] and s.exit_code == 0 and s.examples == 8
    bar = capsys.readouterr().err
    assert "8/8" in bar and "11/8" not in bar and "9/8" not in bar


@pytest.fixture(scope="module")
def many_texts(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("many") / "many.jsonl"
    path.write_text("".join(json.dumps({"text": f"Sentence {i} is about context mixing."}) + "\n" for i in range(300)))
    return str(path)


def _driver(tiny_model_dir, data, out):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_JOB_ID", "RAY_RAYLET_PID")}
    cmd = [sys.executable, "-m", "jobs.score", "--out", out, "--model", tiny_model_dir, "--dataset", data]
    cmd += ["--methods", "attention", "--limit", "0", "--part-size", "2", "--actors", "1", "--no-progress"]
    return cmd, env


def _as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _started(proc, out: str, part: str = "00001") -> list:
    import psutil

    try:
        wait_until(lambda: os.path.exists(f"{out}/parts/{part}/zarr.json"), f"part {part} written", proc)
    except BaseException:
        proc.kill()
        raise
    return psutil.Process(proc.pid).children(recursive=True)


def _alive(procs) -> list:
    import psutil

    return [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted: "), (signal.SIGTERM, 143, "stopped by SIGTERM: ")],  # Ctrl-C; a scheduler
)
def test_ctrl_c_or_sigterm_stops_the_job_and_its_cluster_and_says_how_to_resume(
    tmp_path, tiny_model_dir, many_texts, signum, code, said
):
    out = str(tmp_path / "int.zarr")
    cmd, env = _driver(tiny_model_dir, many_texts, out)
    with hang_guard():
        # A shell runs background jobs with Ctrl-C ignored, and Python keeps an ignored SIGINT: a suite
        # started in the background would see the job finish. The driver starts as a terminal would.
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal
        )
        children = _started(proc, out)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=HANG_S)
        assert proc.returncode == code, err[-2000:]
        assert "parts done; rerun the same command to resume" in err and said in err
        assert "Traceback" not in err and "SIGTERM received" not in err  # no stack dump from Ray's C++ handler
        wait_until(lambda: not _alive(children), "the end of the cluster's processes")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "150 planned" in done.stdout and " 0 failed" in done.stdout


@pytest.mark.slow
def test_a_killed_drivers_leftover_processes_are_ended_by_the_next_run(tmp_path, tiny_model_dir, many_texts):
    from cluster.leftovers import end_leftovers

    out = str(tmp_path / "kill.zarr")
    cmd, env = _driver(tiny_model_dir, many_texts, out)
    with hang_guard():
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        children = _started(proc, out)
        proc.kill()
        proc.wait()
        time.sleep(1)
        leftovers = {p.pid for p in _alive(children)}
        ended = set(end_leftovers())  # what the next run does before it starts its cluster
        assert leftovers <= ended
        wait_until(lambda: not _alive(children), "the end of the leftover processes")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr[-2000:]  # the store resumes after a SIGKILL
