"""The request limit counters, on both backends: exact under concurrent admissions."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from chalicelib.storage.ports import LimitCharge

NOW = 1_800_000_000  # 30 000 000 minutes exactly: a window starts here
LEASE = NOW + 600


def test_an_rpm_of_20_admits_exactly_20_of_100_concurrent_requests(repos) -> None:
    charge = [LimitCharge("key#k1", tokens=10, rpm=20)]
    with ThreadPoolExecutor(16) as pool:
        admissions = list(pool.map(lambda i: repos.limits.admit(f"req_{i}", charge, LEASE, now_s=NOW + 5),
                                   range(100)))
    admitted = [a for a in admissions if a.admitted]
    refused = [a for a in admissions if not a.admitted]
    assert len(admitted) == 20
    assert {(a.refused_scope, a.refused_limit, a.retry_after_s) for a in refused} == {("key#k1", "rpm", 55)}
    # The next minute is a new window.
    assert repos.limits.admit("req_next", charge, LEASE, now_s=NOW + 60).admitted


def test_the_counts_after_admission_say_what_is_left(repos) -> None:
    charge = [LimitCharge("key#k1", tokens=100, rpm=5, tpm=1000)]
    repos.limits.admit("req_1", charge, LEASE, now_s=NOW + 20)
    second = repos.limits.admit("req_2", charge, LEASE, now_s=NOW + 20)
    count = second.counts[0]
    assert (count.scope, count.window_id, count.requests, count.tokens, count.reset_s) == (
        "key#k1", f"key#k1#{NOW // 60}", 2, 200, 40)


def test_a_refused_request_writes_nothing_in_any_scope(repos) -> None:
    key = LimitCharge("key#k1", tokens=10, rpm=100)
    model = LimitCharge("key#k1#model#m", tokens=10, rpm=1)
    assert repos.limits.admit("req_1", [key, model], LEASE, now_s=NOW).admitted
    refused = repos.limits.admit("req_2", [key, model], LEASE, now_s=NOW)
    assert (refused.admitted, refused.refused_scope, refused.refused_limit) == (False, "key#k1#model#m", "rpm")
    # Only the first request was counted in the key scope: 99 more fit, not 98.
    for i in range(99):
        assert repos.limits.admit(f"req_k{i}", [key], LEASE, now_s=NOW).admitted
    assert not repos.limits.admit("req_over", [key], LEASE, now_s=NOW).admitted


def test_tpm_counts_the_estimate_and_the_corrections(repos) -> None:
    charge = [LimitCharge("key#k1", tokens=400, tpm=1000)]
    window = f"key#k1#{NOW // 60}"
    assert repos.limits.admit("req_1", charge, LEASE, now_s=NOW).admitted
    assert repos.limits.admit("req_2", charge, LEASE, now_s=NOW).admitted
    third = repos.limits.admit("req_3", charge, LEASE, now_s=NOW + 30)
    assert (third.admitted, third.refused_limit, third.retry_after_s) == (False, "tpm", 30)
    # The first used 100 tokens, not 400: 300 come back, and a third fits.
    assert repos.limits.finish("req_1", [(window, 100 - 400)])
    assert repos.limits.admit("req_3", charge, LEASE, now_s=NOW + 30).admitted
    # A correction beyond the estimate is counted too (the tokens were used), and fills the window.
    assert repos.limits.finish("req_2", [(window, 500)])
    assert not repos.limits.admit("req_4", [LimitCharge("key#k1", tokens=1, tpm=1000)], LEASE,
                                  now_s=NOW + 30).admitted
    # An estimate larger than the limit never fits.
    assert repos.limits.admit("req_5", [LimitCharge("key#k2", tokens=2000, tpm=1000)], LEASE,
                              now_s=NOW).refused_limit == "tpm"


def test_concurrency_never_exceeds_its_limit_and_slots_come_back_once(repos) -> None:
    charge = [LimitCharge("key#k1", tokens=0, concurrency=3)]
    lock = threading.Lock()
    inflight, most, served = [0], [0], [0]

    def request(i: int) -> None:
        for attempt in range(200):
            if repos.limits.admit(f"req_{i}_{attempt}", charge, LEASE, now_s=NOW).admitted:
                with lock:
                    inflight[0] += 1
                    most[0] = max(most[0], inflight[0])
                time.sleep(0.03)  # holding the slot, so that requests overlap
                with lock:
                    inflight[0] -= 1
                    served[0] += 1
                assert repos.limits.finish(f"req_{i}_{attempt}", [])
                return
            time.sleep(0.002)  # refused: try again shortly

    with ThreadPoolExecutor(30) as pool:
        list(pool.map(request, range(30)))
    assert 2 <= most[0] <= 3, most  # requests did overlap, and never more than the limit
    assert served[0] == 30
    # Every slot was given back: three fit again, the fourth does not.
    for i in range(3):
        assert repos.limits.admit(f"after_{i}", charge, LEASE, now_s=NOW + 1).admitted
    refused = repos.limits.admit("after_3", charge, LEASE, now_s=NOW + 1)
    assert (refused.admitted, refused.refused_limit, refused.retry_after_s) == (False, "concurrency", 1)
    # A second finish gives nothing back.
    assert repos.limits.finish("after_0", [])
    assert not repos.limits.finish("after_0", [])
    assert repos.limits.admit("after_4", charge, LEASE, now_s=NOW + 1).admitted
    assert not repos.limits.admit("after_5", charge, LEASE, now_s=NOW + 1).admitted


def test_expired_leases_are_listed_for_the_sweeper_and_finished_once(repos) -> None:
    charge = [LimitCharge("key#k1", tokens=0, concurrency=1), LimitCharge("key#k1#model#m", tokens=0,
                                                                          concurrency=5)]
    assert repos.limits.admit("req_crashed", charge, NOW + 100, now_s=NOW).admitted
    assert repos.limits.expired_leases(NOW + 99) == []
    [lease] = repos.limits.expired_leases(NOW + 100)
    assert (lease.request_id, set(lease.scopes)) == ("req_crashed", {"key#k1", "key#k1#model#m"})
    assert not repos.limits.admit("req_blocked", charge, LEASE, now_s=NOW + 101).admitted
    assert repos.limits.finish(lease.request_id, [])
    assert not repos.limits.finish(lease.request_id, [])
    assert repos.limits.expired_leases(NOW + 1000) == []
    assert repos.limits.admit("req_after", charge, LEASE, now_s=NOW + 101).admitted
