"""Usage events as JSON lines in local files, in the bucket's partition layout, from many threads and processes."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from chalicelib.core.domain import UsageEvent
from chalicelib.core.errors import StorageError
from chalicelib.storage.local_usage_sink import LocalUsageSink, read_usage_events, usage_files
from chalicelib.usage.events import emit
from tests.unit.own_mounts import ROOT, run_over_own_mount

CLOCK = 1_767_225_600.0  # 2026-01-01T00:00:00Z, when each test's files are opened


def event(request_id: str, time: str = "2026-03-09T14:05:06.789+00:00", **fields) -> UsageEvent:
    return UsageEvent(time=time, request_id=request_id, account_id="acct_1", key_id="key_1",
                      endpoint="chat/completions", model="test-chat", channel="primary", stream=False,
                      status=200, prompt_tokens=10, completion_tokens=5, cost_units=18_000, **fields)


def sink_in(directory: Path, **options) -> LocalUsageSink:
    return LocalUsageSink(directory, clock=lambda: CLOCK, host="gw1", **options)


def request_ids(directory: Path) -> list[str]:
    return [record["request_id"] for record in read_usage_events(directory)]


def open_files_under(directory: Path) -> list[str]:
    """The files under `directory` this process holds open."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            held.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor that listed the directory, closed since
            pass
    return sorted(path for path in held if path.startswith(str(directory)))


def test_an_event_lands_as_its_firehose_line_in_the_partition_of_its_own_time(tmp_path):
    sink = sink_in(tmp_path)
    sent = event("req_1", time="2026-03-09T23:59:59.999+00:00")

    sink.put(sent)

    [path] = usage_files(tmp_path)
    relative = path.relative_to(tmp_path)
    assert str(relative.parent) == "usage/year=2026/month=03/day=09"
    assert re.fullmatch(rf"usage-gw1-{os.getpid()}-2026-01-01-00-00-00-[0-9a-f]{{8}}\.jsonl", relative.name)
    assert path.read_bytes() == sent.to_json_line()  # in the file when put() returns: nothing is buffered


def test_the_partitions_are_the_firehose_streams_prefix_in_the_template(tmp_path):
    template = (ROOT / "infra" / "template.yaml").read_text()
    [prefix] = re.findall(r'^\s+Prefix: "(usage/[^"]*)"', template, flags=re.MULTILINE)
    sink = sink_in(tmp_path)

    sink.put(event("req_1", time="2026-11-02T07:00:00.000+00:00"))

    expected = prefix.replace("!{timestamp:yyyy}", "2026").replace("!{timestamp:MM}", "11") \
        .replace("!{timestamp:dd}", "02")
    [path] = usage_files(tmp_path)
    assert path.relative_to(tmp_path).as_posix() == expected + path.name


def test_an_event_time_with_another_offset_is_partitioned_by_its_utc_day(tmp_path):
    sink = sink_in(tmp_path)

    sink.put(event("req_1", time="2026-03-10T01:30:00+02:00"))  # 23:30 UTC the day before

    [path] = usage_files(tmp_path)
    assert path.parent.name == "day=09"


def test_a_file_is_rotated_before_a_line_would_pass_max_bytes(tmp_path):
    line_size = len(event("req_00").to_json_line())
    sink = sink_in(tmp_path, max_bytes=3 * line_size)

    for n in range(10):
        sink.put(event(f"req_{n:02d}"))

    files = usage_files(tmp_path)
    assert len(files) == 4
    assert sorted(path.stat().st_size for path in files) == [line_size] + [3 * line_size] * 3
    assert sorted(request_ids(tmp_path)) == [f"req_{n:02d}" for n in range(10)]


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path):
    sink = sink_in(tmp_path, max_bytes=64)

    sink.put(event("req_1"))
    sink.put(event("req_2"))

    assert len(usage_files(tmp_path)) == 2
    assert sorted(request_ids(tmp_path)) == ["req_1", "req_2"]


def test_files_are_rotated_by_hour_keeping_the_previous_hour_open_for_late_events(tmp_path):
    sink = sink_in(tmp_path)

    sink.put(event("a", time="2026-03-09T23:59:59.990+00:00"))
    sink.put(event("b", time="2026-03-10T00:00:00.010+00:00"))
    sink.put(event("late", time="2026-03-09T23:59:59.995+00:00"))  # settled just after the hour turned
    assert len(open_files_under(tmp_path)) == 2
    sink.put(event("c", time="2026-03-10T01:00:00.000+00:00"))  # the 23:00 file is done
    sink.put(event("very-late", time="2026-03-09T23:59:59.999+00:00"))

    by_file = {path.relative_to(tmp_path).parent.as_posix(): [] for path in usage_files(tmp_path)}
    hours = {}
    for path in usage_files(tmp_path):
        records = [json.loads(line) for line in path.read_bytes().splitlines()]
        by_file[path.relative_to(tmp_path).parent.as_posix()].append([record["request_id"] for record in records])
        assert len({record["time"][:13] for record in records}) == 1  # one hour per file
        hours.setdefault(records[0]["time"][:13], []).append(path)
    assert sorted(by_file["usage/year=2026/month=03/day=09"]) == [["a", "late"], ["very-late"]]
    assert sorted(by_file["usage/year=2026/month=03/day=10"]) == [["b"], ["c"]]
    assert len(open_files_under(tmp_path)) == 2  # 00:00 and 01:00; the stray 23:00 file was closed at once


def test_close_syncs_and_closes_every_file_and_a_later_event_opens_a_new_one(tmp_path):
    sink = sink_in(tmp_path)
    sink.put(event("a", time="2026-03-09T23:59:59.990+00:00"))
    sink.put(event("b", time="2026-03-10T00:00:00.010+00:00"))
    assert len(open_files_under(tmp_path)) == 2

    sink.close()
    sink.close()

    assert open_files_under(tmp_path) == []
    assert sorted(request_ids(tmp_path)) == ["a", "b"]
    sink.put(event("c", time="2026-03-10T00:00:00.020+00:00"))  # settled during shutdown: still kept
    assert len(usage_files(tmp_path)) == 3
    assert sorted(request_ids(tmp_path)) == ["a", "b", "c"]
    sink.close()


def test_many_threads_writing_at_once_land_every_event_exactly_once_in_whole_lines(tmp_path):
    sink = sink_in(tmp_path, max_bytes=4096)
    start = threading.Barrier(8)

    def write(thread: int) -> None:
        start.wait()
        for n in range(250):
            sink.put(event(f"t{thread}-{n}"))

    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.close()

    for path in usage_files(tmp_path):
        assert path.read_bytes().endswith(b"\n") and path.stat().st_size <= 4096
    ids = request_ids(tmp_path)
    assert len(ids) == 2000 and set(ids) == {f"t{thread}-{n}" for thread in range(8) for n in range(250)}


_WRITER = textwrap.dedent("""
    import sys, threading
    from tests.unit.test_local_usage_sink import event, sink_in
    from pathlib import Path

    sink = sink_in(Path(sys.argv[1]), max_bytes=8192)
    sys.stdin.readline()  # every writer starts together

    def write(thread):
        for n in range(300):
            sink.put(event(f"p{sys.argv[2]}-t{thread}-{n}"))

    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(2)]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    sink.close()
""")


def test_three_processes_writing_at_once_land_every_event_exactly_once_each_in_files_of_its_own(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(n)], cwd=ROOT,
                                stdin=subprocess.PIPE) for n in range(3)]
    for writer in writers:
        writer.stdin.write(b"go\n")
        writer.stdin.close()
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0, 0]

    ids = request_ids(tmp_path)
    assert len(ids) == 1800
    assert set(ids) == {f"p{p}-t{t}-{n}" for p in range(3) for t in range(2) for n in range(300)}
    for path in usage_files(tmp_path):
        owner = re.fullmatch(r"usage-gw1-(\d+)-.*", path.name).group(1)
        writer_of_lines = {line["request_id"].split("-")[0] for line in map(json.loads, path.read_bytes().splitlines())}
        assert len(writer_of_lines) == 1, f"{path.name} holds lines of more than one process"
        assert int(owner) in {writer.pid for writer in writers}


def _forked_writer(sink: LocalUsageSink, name: str) -> None:
    for n in range(100):
        sink.put(event(f"{name}-{n}"))
    sink.close()


def test_processes_forked_from_a_writing_one_write_files_of_their_own(tmp_path):
    sink = sink_in(tmp_path)
    sink.put(event("parent-0"))
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_forked_writer, args=(sink, f"child{n}")) for n in range(3)]
    for child in children:
        child.start()
    sink.put(event("parent-1"))
    for child in children:
        child.join(30)
    sink.close()

    assert [child.exitcode for child in children] == [0, 0, 0]
    ids = request_ids(tmp_path)
    assert len(ids) == 302
    assert set(ids) == {"parent-0", "parent-1"} | {f"child{c}-{n}" for c in range(3) for n in range(100)}
    owners = {re.fullmatch(r"usage-gw1-(\d+)-.*", path.name).group(1) for path in usage_files(tmp_path)}
    assert owners == {str(os.getpid())} | {str(child.pid) for child in children}


def test_a_reader_skips_a_files_unfinished_last_line(tmp_path):
    sink = sink_in(tmp_path)
    sink.put(event("a"))
    sink.put(event("b"))
    sink.close()
    [path] = usage_files(tmp_path)
    with path.open("ab") as out:
        out.write(event("cut").to_json_line()[:40])  # a machine that stopped mid-line

    assert request_ids(tmp_path) == ["a", "b"]


_KILLED_WRITER = textwrap.dedent("""
    import sys
    from tests.unit.test_local_usage_sink import event, sink_in
    from pathlib import Path

    sink = sink_in(Path(sys.argv[1]), max_bytes=16384)
    n = 0
    while True:
        sink.put(event(f"req_{n}"))
        print(n, flush=True)  # said only once put() has returned
        n += 1
""")


def test_a_writer_killed_mid_stream_loses_no_event_it_had_put(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    put = []
    while len(put) < 500:
        put.append(int(writer.stdout.readline()))
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)

    ids = request_ids(tmp_path)
    assert len(ids) == len(set(ids))
    assert {f"req_{n}" for n in put} <= set(ids)


def test_a_sink_that_cannot_write_raises_a_storage_error_and_the_request_goes_on(tmp_path, caplog):
    (tmp_path / "usage").write_text("not a directory")
    sink = sink_in(tmp_path)

    with pytest.raises(StorageError, match="could not be opened"):
        sink.put(event("req_1"))
    with caplog.at_level(logging.ERROR, logger="chalicelib.usage.events"):
        emit(sink, event("req_2"))  # what the relay calls: it logs the event and returns

    assert "usage event req_2 was not delivered" in caplog.text and '"request_id":"req_2"' in caplog.text


_ON_A_DISK_THAT_FILLS = textwrap.dedent("""
    import json, logging, os, sys
    from pathlib import Path
    from chalicelib.storage.local_usage_sink import read_usage_events, usage_files
    from chalicelib.usage.events import emit
    from tests.unit.test_local_usage_sink import event, sink_in

    logging.basicConfig(stream=sys.stderr)
    here = Path(sys.argv[1])
    sink = sink_in(here)
    emit(sink, event("before"))
    with open(here / "filler", "wb", buffering=0) as filler:  # another program takes every byte left
        try:
            while True:
                filler.write(b"x" * 4096)
        except OSError:
            pass
    sent = [f"full-{n}" for n in range(40)]
    for request_id in sent:
        emit(sink, event(request_id))  # never raises: the relay's request is already settled
    os.remove(here / "filler")
    emit(sink, event("after"))
    sink.close()
    print(json.dumps({"read": [record["request_id"] for record in read_usage_events(here)],
                      "files": [path.read_bytes().endswith(b"\\n") for path in usage_files(here)]}))
""")


def test_a_disk_that_fills_up_loses_only_the_events_it_could_not_hold_and_they_are_logged(tmp_path):
    mount = tmp_path / "disk"
    python = _ON_A_DISK_THAT_FILLS.replace("sys.argv[1]", repr(str(mount)))

    child = run_over_own_mount(mount, python, size_kib=64)

    assert child.returncode == 0, child.stderr
    outcome = json.loads(child.stdout)
    read = outcome["read"]
    assert {"before", "after"} <= set(read) and len(read) == len(set(read))
    lost = [f"full-{n}" for n in range(40) if f"full-{n}" not in read]
    assert lost, "the disk never filled"
    for request_id in lost:
        assert f"usage event {request_id} was not delivered" in child.stderr
        assert f'"request_id":"{request_id}"' in child.stderr
    assert outcome["files"] == [True]  # a line cut short was cut away: one file, of whole lines
