"""Joining and starting Ray, as a new user meets it: one rule for RAY_ADDRESS, a join that gives up in
one line, a local start that gets more time and says what happened, SIGTERM handled like Ctrl-C,
leftover-process records kept private and trusted only for the process they name, and unexpected
errors in one line with the traceback kept in a file. None of these starts Ray."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from cluster.connect import ClusterError, Terminated, connect, interrupt_on_sigterm
from cluster.join import GcsAddress, wait_for_gcs
from cluster.leftovers import end_leftovers
from cluster.userdir import UnsafeFolderError, private_dir
from tests.support import HANG_S, free_port, hang_guard

ray = pytest.importorskip("ray")


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """The system temporary directory is this test's own (the per-user folder is made under it)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _plain_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "VZ_RAY_"))}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


@pytest.mark.slow  # starts another process
def test_a_join_where_no_head_answers_gives_up_in_one_line(tmp_path, tiny_model_dir, texts_jsonl):
    port = free_port()  # nothing listens there
    out = tmp_path / "j.zarr"
    cmd = [sys.executable, "-m", "jobs.score", "--out", str(out), "--model", tiny_model_dir, "--dataset"]
    cmd += [texts_jsonl, "--address", f"127.0.0.1:{port}", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_plain_env(VZ_RAY_JOIN_TIMEOUT="1"), timeout=HANG_S)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]  # before it, only the dataset's own progress lines
    assert f"no Ray head answered at 127.0.0.1:{port} in 1 s" in last and "Traceback" not in done.stderr
    assert f"`ray start --head --port {port}`" in last and "VZ_RAY_JOIN_TIMEOUT" in last
    assert not out.exists()


def test_a_port_where_something_else_answers_is_refused_at_once():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer_like_http_1():
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        threading.Thread(target=answer_like_http_1, daemon=True).start()
        gcs = GcsAddress.parse(f"127.0.0.1:{server.getsockname()[1]}", None)
        with hang_guard(), pytest.raises(ClusterError, match="not a Ray head's GCS port"):
            wait_for_gcs(gcs, timeout_s=3600)  # refused at the answer, not after the timeout


@pytest.mark.parametrize(
    ("address", "ray_address", "message"),
    [
        ("http://127.0.0.1:8265", None, "not a URL; a dashboard URL (http://HEAD:8265) is for `ray job submit`"),
        ("head-node", None, "expected HOST:PORT (the head's GCS port, 6379 by default) or auto"),
        ("auto", None, "--address auto: RAY_ADDRESS is not set and `ray start` has started no cluster"),
    ],
)
def test_a_bad_address_is_refused_in_one_line(address, ray_address, message, monkeypatch):
    import cluster.join

    monkeypatch.setattr(cluster.join, "_started_on_this_machine", lambda: None)
    with pytest.raises(ClusterError) as refused:
        GcsAddress.parse(address, ray_address)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_auto_stands_for_ray_address():
    gcs = GcsAddress.parse("auto", "127.0.0.1:6380")
    assert (gcs.host, gcs.port, gcs.rewritten_by_ray) == ("127.0.0.1", 6380, True)
    assert gcs.given == "auto (RAY_ADDRESS=127.0.0.1:6380)"


class _Stop(Exception):
    """What the fake `ray.init` raises once it has seen enough."""


@pytest.fixture
def fake_ray(monkeypatch, own_tmp):
    """`ray.init` recorded instead of run (this process may hold the session's cluster: it is left alone)."""
    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    for name in ("RAY_ADDRESS", "VZ_RAY_START_TIMEOUT", "VZ_RAY_JOIN_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)

    def init(**kwargs):
        calls.append(kwargs)
        raise _Stop()

    monkeypatch.setattr(ray, "init", init)
    return calls


def test_ray_address_alone_is_not_joined_and_a_warning_says_so(fake_ray, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    with (
        pytest.warns(UserWarning, match=r"RAY_ADDRESS=10.0.0.1:6379 is set but not used.*--address auto"),
        pytest.raises(_Stop),
        connect(None, num_cpus=1),
    ):
        pass
    assert [c["address"] for c in fake_ray] == ["local"]


def test_a_local_node_that_times_out_is_given_more_time_then_said_in_one_line(fake_ray, monkeypatch):
    def init(**kwargs):
        fake_ray.append(kwargs)
        raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setenv("VZ_RAY_START_TIMEOUT", "0")  # no time for another try
    with pytest.raises(ClusterError) as failed, connect(None, num_cpus=1):
        pass
    message = str(failed.value)
    assert "the local Ray cluster did not start in" in message and "(1 try;" in message
    assert "VZ_RAY_START_TIMEOUT=SECONDS (now 0)" in message and "\n" not in message
    assert failed.value.exit_code == 1

    tries = iter([True, True, False])  # two tries time out, the third starts (here: stops the test)

    def init_then_start(**kwargs):
        fake_ray.append(kwargs)
        if next(tries):
            raise Exception("The current node timed out during startup.")
        raise _Stop()

    monkeypatch.setattr(ray, "init", init_then_start)
    monkeypatch.setenv("VZ_RAY_START_TIMEOUT", "3600")
    fake_ray.clear()
    with (
        pytest.warns(UserWarning, match="did not start in Ray's 30 s"),
        pytest.raises(_Stop),
        connect(None, num_cpus=1),
    ):
        pass
    assert len(fake_ray) == 3


def test_a_bad_timeout_setting_is_refused(fake_ray, monkeypatch):
    monkeypatch.setenv("VZ_RAY_JOIN_TIMEOUT", "soon")
    refused = pytest.raises(ClusterError, match="VZ_RAY_JOIN_TIMEOUT must be a number of seconds, not 'soon'")
    with refused, connect("127.0.0.1:6379"):
        pass


@pytest.mark.slow  # starts another process
def test_an_unwritable_home_is_one_line_before_ray_starts(tmp_path, tiny_model_dir, texts_jsonl):
    (tmp_path / "file").write_text("")
    env = _plain_env(HOME=str(tmp_path / "file" / "home"), HF_HOME=str(tmp_path / "hf"))
    cmd = [sys.executable, "-m", "jobs.cli", "score", "--out", str(tmp_path / "h.zarr"), "--model", tiny_model_dir]
    cmd += ["--dataset", texts_jsonl, "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=HANG_S)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot start a local Ray cluster: Ray keeps its authentication token in")
    assert "set RAY_AUTH_TOKEN" in last


def test_sigterm_raises_like_ctrl_c_once_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as stopped, interrupt_on_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between two bytecodes
            time.sleep(0.01)
    assert isinstance(stopped.value, Terminated) and stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before

    from jobs.score import JobInterrupted

    stop = JobInterrupted(3, 10, signal.SIGTERM)
    assert str(stop) == "stopped by SIGTERM: 3 of 10 parts done; rerun the same command to resume"
    assert stop.exit_code == 143 and JobInterrupted(3, 10).exit_code == 130


def test_sigterm_is_still_known_when_a_wait_reraises_it_as_a_plain_ctrl_c():
    """Ray's waits turn the `Terminated` raised in them into a KeyboardInterrupt of their own: the run
    must still stop as SIGTERM (exit 143), and a real Ctrl-C after it as Ctrl-C (130)."""
    from cluster.connect import interrupting_signal

    def ray_like_wait():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                time.sleep(0.01)
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # what Ray's check_status raises: no signum

    with pytest.raises(KeyboardInterrupt) as stopped, interrupt_on_sigterm():
        ray_like_wait()
    assert not isinstance(stopped.value, Terminated) and interrupting_signal(stopped.value) == signal.SIGTERM
    with pytest.raises(KeyboardInterrupt) as stopped, interrupt_on_sigterm():
        raise KeyboardInterrupt  # Ctrl-C in a later run of the same process
    assert interrupting_signal(stopped.value) == signal.SIGINT


def test_the_private_folder_is_the_users_own(own_tmp):
    folder = private_dir("clusters")
    st = folder.parent.stat()
    assert folder.parent == own_tmp / f"vz-{os.getuid()}"
    assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
    folder.parent.chmod(0o777)  # anyone could have put records there
    with pytest.raises(UnsafeFolderError, match="open to other users"):
        private_dir("clusters")


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def _write_record(folder: Path, proc, started: float, exe: str) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"driver": [int(gone.stdout), 0.0, sys.executable], "processes": [[proc.pid, started, exe]]}
    (folder / f"{proc.pid}.json").write_text(json.dumps(record))


@pytest.mark.slow  # starts another process
def test_a_leftover_is_ended_only_if_it_is_the_recorded_process_and_the_record_private(own_tmp):
    psutil = pytest.importorskip("psutil")
    procs = [_sleeper() for _ in range(4)]
    try:
        info = [(p, psutil.Process(p.pid)) for p in procs]
        shared, private = own_tmp / "vz-local-clusters", private_dir("clusters")
        (ok, ok_ps), (other_time, ot_ps), (other_exe, oe_ps), (in_shared, sh_ps) = info
        _write_record(private, ok, ok_ps.create_time(), ok_ps.exe())
        _write_record(private, other_time, ot_ps.create_time() - 5, ot_ps.exe())  # a reused process id
        _write_record(private, other_exe, oe_ps.create_time(), "/usr/bin/raylet")
        _write_record(shared, in_shared, sh_ps.create_time(), sh_ps.exe())  # a folder anyone writes
        assert end_leftovers() == [ok.pid]
        assert ok.wait(timeout=60) == -signal.SIGKILL
        assert all(p.poll() is None for p in (other_time, other_exe, in_shared))
        assert not list(private.glob("*.json"))  # records of gone drivers are done with
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.slow  # starts another process
@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
def test_another_users_process_is_never_ended(own_tmp):
    psutil = pytest.importorskip("psutil")
    other = subprocess.Popen(["sleep", "600"], user=65534)
    try:
        p = psutil.Process(other.pid)
        _write_record(private_dir("clusters"), other, p.create_time(), p.exe())
        assert end_leftovers() == [] and other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.slow  # starts another process
def test_an_unexpected_error_is_one_line_and_its_traceback_is_kept(tmp_path):
    from jobs.cli import app

    assert app.pretty_exceptions_enable is False
    script = "from jobs.cli import app, main\n\n@app.command('boom')\ndef boom():\n"
    script += "    raise ValueError('a bug\\nwith a second line')\n\nmain()\n"
    env = _plain_env(TMPDIR=str(tmp_path))
    cmd = [sys.executable, "-c", script, "boom"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=HANG_S)
    assert done.returncode == 1, done.stderr[-3000:]
    err = done.stderr
    assert err.count("\n") == 1 and err.startswith("error: unexpected ValueError: a bug (the full traceback is in ")
    log = Path(err.rsplit("the full traceback is in ", 1)[1].rstrip(")\n"))
    assert log.parent == tmp_path / f"vz-{os.getuid()}" / "logs"
    assert "Traceback" in log.read_text() and "with a second line" in log.read_text()
