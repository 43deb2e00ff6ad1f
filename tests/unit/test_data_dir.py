"""The one-machine data directory: made once, refused clearly when unusable, locked by one gateway."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from chalicelib.core.errors import DataDirectoryUnusable, StorageError
from chalicelib.storage.data_dir import DataDirectory
from tests.unit.own_mounts import ROOT, run_over_own_mount

# A child that opens the directory and prints the refusal (or "opened") as JSON.
_OPEN_AND_REPORT = """
import json
from chalicelib.core.errors import DataDirectoryUnusable
from chalicelib.storage.data_dir import DataDirectory
try:
    DataDirectory.open({path!r})
except DataDirectoryUnusable as exc:
    print(json.dumps({{"refused": str(exc)}}))
else:
    print(json.dumps({{"opened": True}}))
"""

# A gateway in another process: locks the directory, says so, and holds it until its stdin closes.
_HOLD = textwrap.dedent("""
    import sys
    from chalicelib.storage.data_dir import DataDirectory
    with DataDirectory.open(sys.argv[1], exclusive=True):
        print("locked", flush=True)
        sys.stdin.read()
""")


def _refusal(directory) -> str:
    with pytest.raises(DataDirectoryUnusable) as refused:
        DataDirectory.open(directory)
    assert isinstance(refused.value, StorageError)
    message = str(refused.value)
    assert "\n" not in message and str(directory) in message
    return message


def test_a_missing_directory_is_created_private_with_its_parents(tmp_path):
    directory = tmp_path / "srv" / "data"

    with DataDirectory.open(directory) as data:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert data.database_path == directory / "tokenway.db"
        assert data.secrets_key_path == directory / "secrets.key"
        assert sorted(path.name for path in directory.iterdir()) == ["gateway.lock"]  # the probe is gone


def test_a_file_where_the_directory_should_be_is_refused_and_left_alone(tmp_path):
    directory = tmp_path / "data"
    directory.write_text("notes")

    message = _refusal(directory)

    assert "is a file, not a directory" in message and "TOKENWAY_DATA_DIR" in message
    assert directory.read_text() == "notes"


def test_a_directory_under_a_file_is_refused(tmp_path):
    (tmp_path / "notes").write_text("notes")

    message = _refusal(tmp_path / "notes" / "data")

    assert "is under a file" in message and "TOKENWAY_DATA_DIR" in message


def test_a_read_only_directory_is_refused_at_start_and_left_as_it_was(tmp_path):
    mount = tmp_path / "ro"
    data = mount / "data"
    child = run_over_own_mount(mount, _OPEN_AND_REPORT.format(path=str(data)), read_only=True,
                               setup="mkdir -m 700 data && echo kept > data/tokenway.db")

    assert child.returncode == 0, child.stderr
    message = json.loads(child.stdout)["refused"]
    assert message == (f"data directory {data} is on a read-only file system: remount it read-write, "
                       "or set TOKENWAY_DATA_DIR to another directory")


def test_a_read_only_file_system_where_the_directory_would_be_made_is_refused(tmp_path):
    mount = tmp_path / "ro"
    child = run_over_own_mount(mount, _OPEN_AND_REPORT.format(path=str(mount / "data")), read_only=True)

    assert child.returncode == 0, child.stderr
    assert "is on a read-only file system" in json.loads(child.stdout)["refused"]


def test_a_full_directory_is_refused_at_start_and_nothing_is_left_behind(tmp_path):
    mount = tmp_path / "full"
    data = mount / "data"
    python = _OPEN_AND_REPORT.format(path=str(data)) + textwrap.dedent(f"""
        import os
        print(json.dumps({{"left": sorted(os.listdir({str(data)!r}))}}))
    """)
    # dd stops, failing, when the 64 KiB file system is full: that is the point.
    child = run_over_own_mount(mount, python, size_kib=64,
                               setup="mkdir -m 700 data && (dd if=/dev/zero of=data/filler bs=4k 2>/dev/null || true)")

    assert child.returncode == 0, child.stderr
    refused, left = (json.loads(line) for line in child.stdout.splitlines())
    assert refused["refused"] == (f"data directory {data} is full (a 64 KiB probe file did not fit): free space "
                                  "on its file system, or set TOKENWAY_DATA_DIR to another directory")
    assert left["left"] == ["filler"]


def test_a_directory_with_room_on_the_same_small_file_system_opens(tmp_path):
    # The control for the two refusals above: the same mount, neither full nor read-only, is accepted.
    mount = tmp_path / "roomy"
    child = run_over_own_mount(mount, _OPEN_AND_REPORT.format(path=str(mount / "data")), size_kib=256)

    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {"opened": True}


@pytest.fixture
def other_gateway(tmp_path):
    """A gateway process holding tmp_path/data; yields the process, and ends it."""
    directory = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(directory)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)


def test_a_directory_held_by_another_running_gateway_is_refused_naming_it(tmp_path, other_gateway):
    message = _refusal(tmp_path / "data")

    assert message.startswith(f"data directory {tmp_path / 'data'} is in use by another running gateway "
                              f"(pid={other_gateway.pid} ")
    assert message.endswith(": stop that gateway, or set TOKENWAY_DATA_DIR to another directory")


def test_a_stopped_gateway_leaves_the_directory_free(tmp_path, other_gateway):
    other_gateway.stdin.close()
    assert other_gateway.wait(timeout=10) == 0

    DataDirectory.open(tmp_path / "data").close()


def test_a_killed_gateway_leaves_no_stale_lock(tmp_path, other_gateway):
    other_gateway.send_signal(signal.SIGKILL)
    other_gateway.wait(timeout=10)

    with DataDirectory.open(tmp_path / "data") as data:
        assert (data.path / "gateway.lock").read_text().startswith(f"pid={os.getpid()} ")


def test_workers_of_the_gateway_holding_the_directory_share_it(tmp_path, other_gateway):
    worker = DataDirectory.open(tmp_path / "data", exclusive=False)

    assert worker.lock_fd is None
    worker.close()


def test_a_worker_without_a_gateway_holding_the_directory_is_refused(tmp_path):
    directory = tmp_path / "data"
    with pytest.raises(DataDirectoryUnusable, match="is not locked by a running gateway"):
        DataDirectory.open(directory, exclusive=False)
    DataDirectory.open(directory).close()  # made, then released: still no gateway
    with pytest.raises(DataDirectoryUnusable, match="is not locked by a running gateway"):
        DataDirectory.open(directory, exclusive=False)


def _forked_worker(directory, ready, stop) -> None:
    DataDirectory.open(directory, exclusive=False)
    ready.set()
    stop.wait(30)


def test_forked_workers_keep_the_lock_after_the_process_that_took_it_lets_go(tmp_path):
    directory = tmp_path / "data"
    fork = multiprocessing.get_context("fork")
    ready, stop = fork.Event(), fork.Event()
    gateway = DataDirectory.open(directory)
    worker = fork.Process(target=_forked_worker, args=(directory, ready, stop))
    worker.start()
    try:
        assert ready.wait(30)
        gateway.close()  # the worker still has the lock file open: the gateway is still running there

        assert "is in use by another running gateway" in _refusal(directory)
    finally:
        stop.set()
        worker.join(30)
    assert worker.exitcode == 0
    DataDirectory.open(directory).close()


def test_the_admin_token_is_made_once_private_and_reused_on_the_next_start(tmp_path):
    directory = tmp_path / "data"
    with DataDirectory.open(directory) as data:
        token = data.admin_token()
        assert len(token) >= 43  # secrets.token_urlsafe(32)
        assert stat.S_IMODE(data.admin_token_path.stat().st_mode) == 0o600
        assert data.admin_token() == token

    with DataDirectory.open(directory) as data:
        assert data.admin_token() == token


def test_a_configured_admin_token_wins_and_is_never_written(tmp_path):
    with DataDirectory.open(tmp_path / "data") as data:
        assert data.admin_token("operator-chosen") == "operator-chosen"
        assert not data.admin_token_path.exists()

        made = data.admin_token()
        assert data.admin_token("operator-chosen") == "operator-chosen"
        assert data.admin_token_path.read_text().strip() == made


def test_an_admin_token_file_others_can_read_is_made_private(tmp_path):
    with DataDirectory.open(tmp_path / "data") as data:
        data.admin_token_path.write_text("kept-token\n")
        data.admin_token_path.chmod(0o644)

        assert data.admin_token() == "kept-token"
        assert stat.S_IMODE(data.admin_token_path.stat().st_mode) == 0o600


def test_an_empty_admin_token_file_is_refused_with_the_fix(tmp_path):
    with DataDirectory.open(tmp_path / "data") as data:
        data.admin_token_path.write_text("")
        data.admin_token_path.chmod(0o600)

        with pytest.raises(DataDirectoryUnusable, match="is empty: delete it to have a new token made, or set "
                                                        "TOKENWAY_ADMIN_TOKEN"):
            data.admin_token()


def _token_of_worker(directory, start, answers) -> None:
    data = DataDirectory.open(directory, exclusive=False)
    start.wait(30)
    answers.put(data.admin_token())


def test_workers_starting_together_agree_on_one_admin_token(tmp_path):
    directory = tmp_path / "data"
    fork = multiprocessing.get_context("fork")
    start, answers = fork.Event(), fork.Queue()
    with DataDirectory.open(directory) as gateway:
        workers = [fork.Process(target=_token_of_worker, args=(directory, start, answers)) for _ in range(4)]
        for worker in workers:
            worker.start()
        start.set()
        tokens = {answers.get(timeout=30) for _ in workers}
        for worker in workers:
            worker.join(30)

        assert tokens == {gateway.admin_token()}
        assert sorted(path.name for path in directory.iterdir()) == ["admin_token", "gateway.lock"]
