"""`python -m bench.sqlite_wallet`: the SQLite wallet's hold + settle pairs per second on one file.

Each pair is what a relay request writes: a hold (one transaction), then its settlement (another).
Run from 1 thread, from several threads of one process, and from several processes, each with
its own accounts and keys so that only the file's write lock is shared; and once more on one
wallet, where every pair contends for the same rows. Prints pairs per second, the p50/p99 of a
pair, and the p50 of the first and last tenth of the pairs (the ledger grows as it runs).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from chalicelib.core.domain import Account, ApiKey, Hold, HoldResult, LedgerEntry
from chalicelib.storage.sqlite.account_repo import SqliteAccountRepo
from chalicelib.storage.sqlite.database import Database
from chalicelib.storage.sqlite.key_repo import SqliteKeyRepo
from chalicelib.storage.sqlite.wallet_repo import SqliteWalletRepo


def prepare(path: Path, wallets: int) -> None:
    db = Database(path)
    accounts, keys, wallet = SqliteAccountRepo(db), SqliteKeyRepo(db), SqliteWalletRepo(db)
    for n in range(wallets):
        accounts.create(Account(account_id=f"acct_{n}", email=f"{n}@example.com", created_at=n))
        keys.create(ApiKey(key_id=f"key_{n}", key_hash=f"{n:064d}", account_id=f"acct_{n}", name="bench",
                           created_at=n, hint="sk-…"))
        wallet.credit(LedgerEntry(f"acct_{n}", f"{0:013d}#credit", "credit", 10**15, 0))


def pairs(wallets: SqliteWalletRepo, wallet: int, worker: int, count: int) -> list[float]:
    """`count` hold + settle pairs on one wallet; the seconds each took."""
    took = []
    for n in range(count):
        now = 1_700_000_000_000 + n
        hold = Hold(request_id=f"w{worker}-{n}", account_id=f"acct_{wallet}", key_hash=f"{wallet:064d}",
                    amount=300_000, created_at=now, expires_at=now + 600_000)
        entry = LedgerEntry(account_id=hold.account_id, entry_id=f"{now:013d}#{hold.request_id}", kind="charge",
                            amount=0, created_at=now, request_id=hold.request_id, key_id=f"key_{wallet}",
                            model="bench", prompt_tokens=12, completion_tokens=64)
        started = time.perf_counter()
        assert wallets.hold(hold) is HoldResult.HELD
        wallets.settle(hold, 123_456, entry)
        took.append(time.perf_counter() - started)
    return took


def _process(path: Path, wallet: int, worker: int, count: int, start: Any, results: Any) -> None:
    wallets = SqliteWalletRepo(Database(path))
    start.wait()
    results.put(pairs(wallets, wallet, worker, count))


def run(path: Path, *, workers: int, processes: bool, shared_wallet: bool, count: int) -> dict[str, float]:
    started = time.perf_counter()
    if processes:
        context = multiprocessing.get_context("spawn")
        start, results = context.Barrier(workers + 1), context.Queue()
        procs = [context.Process(target=_process, args=(path, 0 if shared_wallet else n, n, count, start, results))
                 for n in range(workers)]
        for proc in procs:
            proc.start()
        start.wait()
        started = time.perf_counter()
        timings = [results.get() for _ in procs]
        for proc in procs:
            proc.join()
    else:
        wallets = SqliteWalletRepo(Database(path))
        timings = [[] for _ in range(workers)]

        def one(n: int) -> None:
            timings[n] = pairs(wallets, 0 if shared_wallet else n, n, count)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elapsed = time.perf_counter() - started
    every = sorted(t for worker in timings for t in worker)
    tenth = max(1, count // 10)
    first = [t for worker in timings for t in worker[:tenth]]
    last = [t for worker in timings for t in worker[-tenth:]]
    return {"pairs/s": workers * count / elapsed, "p50 ms": 1000 * statistics.median(every),
            "p99 ms": 1000 * every[int(len(every) * 0.99) - 1], "first tenth p50 ms": 1000 * statistics.median(first),
            "last tenth p50 ms": 1000 * statistics.median(last)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="pairs per worker")
    args = parser.parse_args()
    runs = [("1 thread", 1, False, False), ("4 threads", 4, False, False), ("4 processes", 4, True, False),
            ("4 threads, one wallet", 4, False, True), ("4 processes, one wallet", 4, True, True),
            ("16 threads, one wallet", 16, False, True)]
    print(f"{'run':<26}{'pairs/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'first p50':>11}{'last p50':>10}")
    for name, workers, processes, shared in runs:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "tokenway.db"
            prepare(path, workers)
            result = run(path, workers=workers, processes=processes, shared_wallet=shared, count=args.n)
        print(f"{name:<26}{result['pairs/s']:>10.0f}{result['p50 ms']:>9.2f}{result['p99 ms']:>9.2f}"
              f"{result['first tenth p50 ms']:>11.2f}{result['last tenth p50 ms']:>10.2f}")


if __name__ == "__main__":
    main()
