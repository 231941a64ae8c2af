"""Benchmark: 50 runners each sync a 60-minute session to one hub at the same time (issue 15, "Scale").

The hub is the sync API (service/hub/api.py) over a ``HubStore`` under uvicorn, in its own process, on SQLite and
then on PostgreSQL (a throw-away server, tests/pg.py). Each runner's Pi is a logbook of its own holding a 60-minute
two-sensor session at 100 Hz stored as the live daemon stores it (one-second raw chunks), and a thread running
``stackcue sync``'s code (service/sync/run.py) with the default ``[sync]`` settings (timeout 20 s). All 50 start
together.

Prints, per store: whether all 50 completed (and the hub's rows of one session equal the Pi's by hash), the wall
time, the bytes sent, and the hub process's peak memory (VmHWM). Figures are printed, not asserted. The 50 Pis
run in one process on this machine, so their CPU (building and hashing parts) competes with the hub's: the time
is an upper bound for 50 real Pis.

    .venv/bin/python bench/bench_hub_sync.py [RUNNERS] [MINUTES] [sqlite|postgres|both]
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation  # noqa: E402
from stackcue.service.config import load_config  # noqa: E402
from stackcue.service.hub import parts  # noqa: E402
from stackcue.service.hub.store import HubStore  # noqa: E402
from stackcue.service.logbook import Logbook  # noqa: E402
from stackcue.service.logbook.codec import decode_chunk, encode_chunk  # noqa: E402
from stackcue.service.session_store import store_recording  # noqa: E402
from stackcue.service.sync import run as sync_run  # noqa: E402

RUNNERS = int(sys.argv[1]) if len(sys.argv) > 1 else 50
MINUTES = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
STORES = (sys.argv[3] if len(sys.argv) > 3 else "both").split(",")
OUT = ROOT / "out" / "bench" / "hub_sync"
HUB = "bench-hub"

SERVE = """
import sys, uvicorn
from stackcue.service.hub import api
from stackcue.service.hub.store import HubStore
store = HubStore(sys.argv[1])
app = api.app(store, sys.argv[3])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", lifespan="off")
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_session() -> tuple[Path, str]:
    """A logbook with one session of MINUTES at 100 Hz, two sensors, its raw samples in one-second chunks."""
    book = OUT / f"session-{MINUTES:g}min.sqlite"
    if book.exists():
        with sqlite3.connect(book) as c:
            return book, c.execute("SELECT id FROM sessions").fetchone()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "build.sqlite"
    tmp.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as d:
        csv = Path(d) / "run.csv"
        write_simulation(simulate(SimParams(minutes=MINUTES, rate_hz=100, seed=7, trunk=True)), csv)
        sid, _ = store_recording(csv, load_config(), out=io.StringIO(), err=io.StringIO(), logbook=str(tmp))
    with Logbook(tmp) as b:  # re-cut the import's big chunks into the live writer's one-second chunks
        chunks = [
            (decode_chunk(data, n, bool(tr)), tr)
            for data, n, tr in b.conn.execute(
                "SELECT data, n, trunk FROM raw_chunks WHERE session = ? ORDER BY rowid", (sid,)
            ).fetchall()
        ]
        with b.conn:
            b.conn.execute("BEGIN IMMEDIATE")
            b.conn.execute("DELETE FROM raw_chunks WHERE session = ?", (sid,))
            for c, tr in chunks:
                t = c["t"]
                for i0 in range(0, len(t), 100):
                    s = slice(i0, i0 + 100)
                    extra = (c["trunk_acc"][s], c["trunk_gyr"][s], c["trunk_valid"][s]) if tr else ()
                    b.conn.execute(
                        "INSERT INTO raw_chunks (session, t0, t1, n, trunk, data) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            sid,
                            float(t[s][0]),
                            float(t[s][-1]),
                            len(t[s]),
                            tr,
                            encode_chunk(t[s], c["acc"][s], c["gyr"][s], *extra),
                        ),
                    )
        b.conn.execute("VACUUM")
    tmp.rename(book)
    return book, sid


def pis(base: Path, sid: str, work: Path) -> list[tuple[str, Path, str]]:
    """RUNNERS logbooks, each the base session as runner rN's own (its own id)."""
    out = []
    for i in range(RUNNERS):
        runner, new = f"r{i:02d}", f"{sid[:-6]}{i:06d}"
        p = work / f"{runner}.sqlite"
        shutil.copy(base, p)
        with sqlite3.connect(p) as c:
            c.execute("UPDATE sessions SET id = ?, runner = ?", (new, runner))
            for t in ("strides", "alerts", "events", "raw_chunks"):
                c.execute(f"UPDATE {t} SET session = ?", (new,))
        out.append((runner, p, new))
    return out


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def bench(store_name: str, url: str, base: Path, sid: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="stackcue-bench-sync-"))
    try:
        runners = pis(base, sid, work)
        with HubStore(url) as store:
            tokens = {}
            for runner, _, _ in runners:
                store.add_runner(runner)
                tokens[runner] = store.issue_token(runner)
        port = free_port()
        hub = subprocess.Popen([sys.executable, "-c", SERVE, url, str(port), HUB])
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/hello", trust_env=False)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or hub.poll() is not None:
                    raise SystemExit("the hub did not start") from None
                time.sleep(0.1)
        base_kib = peak_kib(hub.pid)
        results: dict[str, object] = {}

        def one(runner: str, book_path: Path, rsid: str) -> None:
            tf = work / f"{runner}.token"
            tf.write_text(tokens[runner] + "\n")
            tf.chmod(0o600)
            cfg_file = work / f"{runner}.toml"
            cfg_file.write_text(
                f'[runner]\nid = "{runner}"\n[logbook]\npath = "{book_path}"\n[sync]\nenabled = true\n'
                f'hub_name = "{HUB}"\nurl = "http://127.0.0.1:{port}"\ntoken_file = "{tf}"\n'
            )
            try:
                with Logbook(book_path) as b:
                    results[runner] = sync_run.sync(load_config(cfg_file), b, lambda line: None)
            except Exception as exc:  # counted, printed below
                results[runner] = exc

        threads = [threading.Thread(target=one, args=r) for r in runners]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        peak = peak_kib(hub.pid)
        hub.terminate()
        hub.wait(30)
        ok = [r for r, o in results.items() if isinstance(o, sync_run.Outcome) and o.sent == 1 and not o.failed]
        bad = {r: o for r, o in results.items() if r not in ok}
        with HubStore(url) as store, store.book() as hb:
            complete = sum(hb.session(rsid) is not None for _, _, rsid in runners)
            runner, p, rsid = runners[-1]
            with Logbook(p, readonly=True) as mine:
                same = parts.samples_digest(hb.raw_chunks(rsid)) == parts.samples_digest(mine.raw_chunks(rsid))
                same &= hb.strides(rsid) == mine.strides(rsid)
        with Logbook(runners[0][1], readonly=True) as b:
            total = sum(len(body) for _, body in parts.session_parts(b, runners[0][2]))
        print(
            f"{store_name}: {len(ok)}/{RUNNERS} runners synced a {MINUTES:g}-min session "
            f"({total / 1e6:.1f} MB each, {RUNNERS * total / 1e6:.0f} MB in all) in {wall:.1f} s; "
            f"complete on the hub: {complete}/{RUNNERS}; one session equal to its Pi by hash: {same}; "
            f"hub peak memory (VmHWM) {peak / 1024:.0f} MiB (at start {base_kib / 1024:.0f} MiB)"
        )
        for r, o in list(bad.items())[:5]:
            print(f"  {r}: {o if isinstance(o, Exception) else o.lines[-3:]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    t = time.monotonic()
    base, sid = one_session()
    print(f"session: {MINUTES:g} min, 100 Hz, two sensors, one-second chunks ({time.monotonic() - t:.0f} s to make)")
    if "sqlite" in STORES or "both" in STORES:
        with tempfile.TemporaryDirectory(prefix="stackcue-bench-hub-") as d:
            bench("SQLite", f"sqlite:///{d}/hub.sqlite", base, sid)
    if "postgres" in STORES or "both" in STORES:
        from pg import PgServer

        server = PgServer().start()
        try:
            bench("PostgreSQL", server.create_database(), base, sid)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
