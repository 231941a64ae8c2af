"""The logbook from the coach's side: `analyze --save`, `import`, `analyze --session`, `sessions`, `runner`,
and the logbook on a full or read-only file system (real tmpfs mounts) during a live run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_mqtt import Sub, wait_until

from stackcue.firmware_bridge.csv_format import read_recording
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation
from stackcue.service.analyze import analyze_file
from stackcue.service.config import load_config
from stackcue.service.logbook import Logbook

pytest_plugins = ["broker"]
EXE = str(Path(sys.executable).parent / "stackcue")


def stackcue(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout)


def write_config(path: Path, logbook: Path | str, extra: str = "") -> Path:
    path.write_text(f'[runner]\nid = "ann"\n[logbook]\npath = "{logbook}"\n{extra}')
    return path


@pytest.fixture(scope="module")
def run_csv(tmp_path_factory) -> tuple[Path, list[dict]]:
    d = tmp_path_factory.mktemp("sessions")
    csv = d / "run.csv"
    write_simulation(simulate(SimParams(minutes=4, rate_hz=200, trunk=True, seed=61)), csv)
    csv.write_text(csv.read_text().replace("# runner=sim\n", "# runner=ann\n", 1))  # the recording names its runner
    events = analyze_file(csv, load_config(), jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
    assert sum(e["type"] == "alert" for e in events) >= 2
    return csv, events


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_save_stores_everything_analyze_prints(run_csv, tmp_path):
    csv, _ = run_csv
    cfg = write_config(tmp_path / "c.toml", tmp_path / "lb.sqlite")
    r = stackcue("analyze", str(csv), "--save", "--jsonl", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    printed = jsonl(r.stdout)
    assert "stored as session" in r.stderr
    with Logbook(tmp_path / "lb.sqlite") as book:
        (s,) = book.sessions()
        assert (s["runner"], s["origin"], s["ended_how"]) == ("ann", "analyze", "clean")
        assert s["source"]["kind"] == "file" and s["source"]["path"] == str(csv.resolve())
        assert s["duration_s"] == printed[-1]["duration_s"]
        assert book.strides(s["id"]) == [e for e in printed if e["type"] == "stride"]
        assert [a["payload"] for a in book.alerts(s["id"])] == [e for e in printed if e["type"] == "alert"]
        others = [e for e in printed if e["type"] not in ("stride", "alert")]
        assert book.events(s["id"]) == others  # calibration, clear, gap, summary ...: in order, equal
        assert {"calibration", "clear", "summary"} <= {e["type"] for e in others}
        rec, _, _ = read_recording(csv)
        chunks = list(book.raw_chunks(s["id"]))
        t = np.concatenate([c["t"] for c in chunks])
        assert np.array_equal(t, rec.t)  # every sample, times exact
        acc = np.concatenate([c["acc"] for c in chunks])
        assert np.array_equal(acc, rec.acc.astype(np.float32))
        trunk = np.concatenate([c["trunk_gyr"] for c in chunks])
        assert np.array_equal(trunk, rec.trunk_gyr.astype(np.float32), equal_nan=True)


@pytest.mark.slow
def test_reanalysis_of_a_stored_session_with_other_settings(run_csv, tmp_path):
    csv, events = run_csv
    lb = tmp_path / "lb.sqlite"
    cfg = write_config(tmp_path / "c.toml", lb)
    assert stackcue("import", str(csv), "--config", str(cfg)).returncode == 0
    sid = Logbook(lb).sessions()[0]["id"]
    r = stackcue("analyze", "--session", sid[:12], "--jsonl", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    again = [e for e in jsonl(r.stdout) if e["type"] == "stride"]
    want = [e for e in events if e["type"] == "stride"]
    assert len(again) == len(want)
    # the logbook keeps the sensor values as float32 (16-bit ADC data: nothing measured is lost); the strides
    # from those values agree with the float64 file's to well under the 0.1° the estimates are good for
    for key, tol in (("pelvic_tilt_deg", 0.01), ("stack_deg", 0.01), ("trunk_lean_deg", 0.01), ("cadence_spm", 0.05)):
        a, b = (np.array([np.nan if e[key] is None else e[key] for e in es]) for es in (again, want))
        assert np.isfinite(b).sum() > 0.8 * len(b) and np.allclose(a, b, atol=tol, equal_nan=True), key
    assert [e["t_start"] for e in again] == [e["t_start"] for e in want]
    # other settings: with a coach's tighter tilt limit the same run raises tilt alerts it did not before
    strict = write_config(
        tmp_path / "strict.toml", lb, '[alerts]\nanterior_tilt_deg = 2.0\n[reference]\nmode = "neutral"\n'
    )
    r2 = stackcue("analyze", "--session", "latest", "--jsonl", "--config", str(strict))
    assert not any(e["type"] == "alert" and e["kind"] == "anterior_tilt" for e in events)
    assert any(e["type"] == "alert" and e["kind"] == "anterior_tilt" for e in jsonl(r2.stdout))
    r3 = stackcue("analyze", "--session", "latest", "--config", str(cfg))  # the human summary
    assert r3.returncode == 0 and f"session {sid}" in r3.stdout and "Alerts:" in r3.stdout


@pytest.mark.slow
def test_import_once_and_the_sessions_table(run_csv, tmp_path):
    csv, events = run_csv
    lb = tmp_path / "lb.sqlite"
    cfg = write_config(tmp_path / "c.toml", lb)
    r = stackcue("import", str(csv), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    summ = events[-1]
    assert f"{summ['strides']} strides, {summ['alerts']} alerts" in r.stdout
    again = stackcue("import", str(csv), "--config", str(cfg))
    assert again.returncode == 2 and "is already in" in again.stderr and len(again.stderr.splitlines()) == 1
    other = tmp_path / "bob.csv"  # a second runner, recorded "later"
    text = csv.read_text()
    other.write_text(text.replace("# runner=ann\n", "# runner=bob\n# started_utc=2030-01-02T07:30:00+00:00\n"))
    assert stackcue("import", str(other), "--config", str(cfg)).returncode == 0
    table = stackcue("sessions", "--config", str(cfg))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "session",
        "started",
        "duration",
        "strides",
        "cadence",
        "tilt",
        "lean",
        "stack",
        "alerts",
        "ended",
        "notes",
    ]
    assert len(lines) == 4 and lines[2].startswith("2030")  # header, two sessions, the legend; oldest first
    steady = [e for e in events if e["type"] == "stride" and e["steady"]]
    row = lines[1].split()  # the start is a date and a time: two fields
    assert row[5] == f"{np.mean([e['cadence_spm'] for e in steady]):.0f}"
    assert row[6] == f"{np.mean([e['pelvic_tilt_deg'] for e in steady]):+.1f}"
    assert row[9] == str(summ["alerts"]) and row[10] == "clean"
    only_bob = stackcue("sessions", "--config", str(cfg), "--runner", "bob").stdout.splitlines()
    assert len(only_bob) == 3 and "2030-01-02" in only_bob[1]
    since = stackcue("sessions", "--config", str(cfg), "--since", "2029-12-31").stdout.splitlines()
    assert len(since) == 3
    first = lines[1].split()[0]
    # the coach's notes: set, added to, shown whole, cut in the table, removed
    assert stackcue("note", first, "--config", str(cfg)).stdout.strip() == f"session {first} has no notes"
    assert stackcue("note", first, "easy 5 km, new shoes", "--config", str(cfg)).returncode == 0
    r = stackcue("note", first, "--append", "left hip sore after 20 minutes of the hill", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    shown = stackcue("note", first, "--config", str(cfg)).stdout
    assert shown == "easy 5 km, new shoes\nleft hip sore after 20 minutes of the hill\n"
    assert Logbook(lb).session(first)["notes"] == shown.strip()
    row = next(x for x in stackcue("sessions", "--config", str(cfg)).stdout.splitlines() if x.startswith(first))
    assert row.endswith("clean  easy 5 km, new shoes")
    long = "a very long note that goes on and on about the run"
    assert stackcue("note", first, long, "--config", str(cfg)).returncode == 0
    row = next(x for x in stackcue("sessions", "--config", str(cfg)).stdout.splitlines() if x.startswith(first))
    assert row.endswith("clean  " + long[:31] + "…")
    assert stackcue("note", first, "--clear", "--config", str(cfg)).returncode == 0
    assert Logbook(lb).session(first)["notes"] is None
    dry = stackcue("sessions", "--config", str(cfg), "--delete", first)
    assert dry.returncode == 0 and "would delete" in dry.stdout and len(Logbook(lb).sessions()) == 2
    gone = stackcue("sessions", "--config", str(cfg), "--delete", first, "--yes")
    assert gone.returncode == 0 and [s["runner"] for s in Logbook(lb).sessions()] == ["bob"]
    assert stackcue("import", str(csv), "--config", str(cfg)).returncode == 0  # and it can be stored again


@pytest.mark.slow
def test_runner_export_and_delete(run_csv, tmp_path):
    csv, events = run_csv
    lb = tmp_path / "lb.sqlite"
    cfg = write_config(tmp_path / "c.toml", lb)
    assert stackcue("import", str(csv), "--config", str(cfg)).returncode == 0
    bob = tmp_path / "bob.csv"
    bob.write_text(csv.read_text().replace("# runner=ann\n", "# runner=bob\n"))
    assert stackcue("import", str(bob), "--config", str(cfg)).returncode == 0
    ann = next(s["id"] for s in Logbook(lb).sessions() if s["runner"] == "ann")
    assert stackcue("note", ann, "tempo run, felt strong", "--config", str(cfg)).returncode == 0
    out = tmp_path / "ann.zip"
    r = stackcue("runner", "export", "ann", "-o", str(out), "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    with zipfile.ZipFile(out) as z:
        manifest = json.loads(z.read("manifest.json"))
        (entry,) = manifest["sessions"]
        assert entry["id"] == ann and entry["notes"] == "tempo run, felt strong" and entry["origin"] == "import"
        lines = jsonl(z.read(entry["events"]).decode())
        assert [e for e in lines if e["type"] == "stride"] == [e for e in events if e["type"] == "stride"]
        samples = tmp_path / "samples.csv"
        samples.write_bytes(z.read(entry["samples"]))
    # the exported samples are an exchange CSV: analysed again they give the same strides
    again = analyze_file(samples, load_config(), jsonl=True, out=io.StringIO(), err=io.StringIO(), progress=False)
    assert len([e for e in again if e["type"] == "stride"]) == events[-1]["strides"]

    dry = stackcue("runner", "delete", "ann", "--config", str(cfg))
    assert dry.returncode == 0 and "would delete 1 sessions" in dry.stdout
    assert len(Logbook(lb).sessions()) == 2
    gone = stackcue("runner", "delete", "ann", "--yes", "--config", str(cfg))
    assert gone.returncode == 0, gone.stderr
    with Logbook(lb) as book:
        assert [s["runner"] for s in book.sessions()] == ["bob"]
        for table in ("strides", "alerts", "events", "raw_chunks"):
            n = book.conn.execute(f"SELECT count(*) FROM {table} WHERE session NOT IN (SELECT id FROM sessions)")
            assert n.fetchone()[0] == 0, table
        assert book.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert b'"runner":"ann"' not in lb.read_bytes()  # secure_delete + vacuum: not left in free pages
    r = stackcue("runner", "export", "ann", "-o", str(out), "--config", str(cfg))
    assert r.returncode == 2 and "no sessions of runner 'ann'" in r.stderr and "'bob'" in r.stderr


@pytest.fixture(scope="module")
def two_sessions(run_csv, tmp_path_factory) -> Path:
    """A logbook with two sessions whose ids both start with "2" (the mistakes below only read it)."""
    csv, _ = run_csv
    tmp = tmp_path_factory.mktemp("two")
    lb = tmp / "lb.sqlite"
    cfg = write_config(tmp / "c.toml", lb)
    for name in ("a", "b"):  # two recordings: the same content is stored once, so b lacks a's last row
        copy = tmp / f"{name}.csv"
        data = csv.read_bytes()
        copy.write_bytes(data if name == "a" else data[: data.rstrip(b"\n").rfind(b"\n") + 1])
        assert stackcue("import", str(copy), "--config", str(cfg)).returncode == 0
    return lb


@pytest.mark.parametrize(
    "args, message",
    [
        (["sessions"], "no logbook: [logbook] path is empty"),
        (["sessions", "--logbook", "{tmp}/none.sqlite"], "does not exist yet"),
        (["analyze", "--session", "nope", "--logbook", "{lb}"], "no session 'nope' in"),
        (["analyze", "--session", "2", "--logbook", "{lb}"], "is ambiguous"),
        (["analyze", "{csv}", "--session", "latest"], "give a recording FILE or --session ID"),
        (["analyze", "--save", "--session", "latest", "--logbook", "{lb}"], "a --session is in the logbook already"),
        (["sessions", "--since", "last week", "--logbook", "{lb}"], "--since 'last week'"),
        (["runner", "export", "ann", "--logbook", "{lb}"], "runner export needs -o"),
        (["sessions", "--logbook", "{csv}"], "cannot open"),
        (["note", "nope", "--logbook", "{lb}"], "no session 'nope' in"),
        (["note", "latest", "text", "--clear", "--logbook", "{lb}"], "give one of TEXT, --append TEXT or --clear"),
        (["note", "latest", "--append", " ", "--logbook", "{lb}"], "--append needs a TEXT that is not empty"),
    ],
)
def test_mistakes_are_one_line(run_csv, two_sessions, tmp_path, args, message):
    csv, _ = run_csv
    lb = two_sessions
    empty = write_config(tmp_path / "empty.toml", "")
    argv = [a.format(tmp=tmp_path, lb=lb, csv=csv) for a in args]
    r = stackcue(*argv, "--config", str(empty))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------------------ a live run on a failing file system


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'not root'}): needs root, as CI has")


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    _mount_tmpfs(mnt, "1m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _live_config(tmp_path: Path, broker, csv: Path, logbook: Path) -> Path:
    p = tmp_path / "live.toml"
    p.write_text(
        f'[runner]\nid = "ann"\n[source]\nkind = "replay"\npath = "{csv}"\nspeed = 20.0\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n[logbook]\npath = "{logbook}"\n'
    )
    return p


def _alerts_of_live_run(broker, cfg: Path, during=None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    sub = Sub(broker, ["stackcue/ann/alert", "stackcue/ann/status"], clean=True, client_id=f"phone-{time.time()}")
    p = subprocess.Popen([EXE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if during is not None:
        during(p)
    out, err = p.communicate(timeout=120)
    wait_until(
        lambda: sub.on("stackcue/ann/status") and sub.on("stackcue/ann/status")[-1][1] == "offline",
        10,
        "offline status",
    )
    alerts = sub.json("stackcue/ann/alert")
    sub.close()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), alerts


@pytest.mark.slow
def test_full_disk_during_a_live_run(broker, run_csv, tmp_path, small_fs):
    """The logbook on a 1 MB tmpfs: the disk fills mid-run; alerts are still published, exit 0, one status line."""
    csv, events = run_csv
    r, alerts = _alerts_of_live_run(broker, _live_config(tmp_path, broker, csv, small_fs / "lb.sqlite"))
    assert r.returncode == 0, r.stderr
    assert [(a["kind"], a["t"]) for a in alerts] == [(e["kind"], e["t"]) for e in events if e["type"] == "alert"]
    assert "database or disk is full" in r.stderr
    assert "Traceback" not in r.stderr
    with Logbook(small_fs / "lb.sqlite") as book:  # what was written before it filled is intact
        assert book.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (s,) = book.sessions()
        assert 0 < len(book.strides(s["id"])) and book.has_raw(s["id"])


@pytest.mark.slow
def test_read_only_file_system(broker, run_csv, tmp_path, small_fs):
    """The card came up read-only (as ext4 remounts itself after errors): one line, the run and its cues go on.

    Linux refuses a read-only remount while a process has a file open for writing (EBUSY), so the switch
    happens between two runs; during a run a write error takes the same path as the full disk above.
    """
    csv, events = run_csv
    want = [(e["kind"], e["t"]) for e in events if e["type"] == "alert"]
    lb = small_fs / "lb.sqlite"
    cfg = _live_config(tmp_path, broker, csv, lb)
    with Logbook(lb) as book:  # an earlier session, killed mid-run: it must still be marked when possible
        book.conn.execute("INSERT INTO sessions (id, runner, started_epoch) VALUES ('old', 'ann', 1.0)")
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    r, alerts = _alerts_of_live_run(broker, cfg)
    assert r.returncode == 0, r.stderr
    assert [(a["kind"], a["t"]) for a in alerts] == want  # the cues went on
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "logbook" in ln and "ERROR" in ln]
    assert lines and "read-only" in lines[0].lower() and "running without it" in lines[0], r.stderr
    assert len(lines) == 1, lines  # said once, not once a second


@pytest.mark.parametrize("rep", range(3))
@pytest.mark.slow
def test_kill_9_of_stackcue_run_loses_at_most_a_second(broker, run_csv, tmp_path, rep):
    """`stackcue run` (replay in real time) killed with SIGKILL at a random moment: the logbook is intact, at
    most about a second of samples is missing, and the next start marks the session unclean."""
    import random
    import signal

    csv, _ = run_csv
    lb = tmp_path / "lb.sqlite"
    cfg = tmp_path / "live.toml"
    cfg.write_text(
        f'[runner]\nid = "ann"\n[source]\nkind = "replay"\npath = "{csv}"\nspeed = 1.0\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n[logbook]\npath = "{lb}"\n'
    )
    p = subprocess.Popen(
        [EXE, "run", "--config", str(cfg), "--jsonl"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    first = json.loads(p.stdout.readline())  # the session event: the replay starts with it
    t_start = time.monotonic()
    assert first["type"] == "session"
    time.sleep(random.Random(rep).uniform(3.0, 7.0))
    p.send_signal(signal.SIGKILL)
    reached = time.monotonic() - t_start  # data time the replay had reached (speed 1), give or take start-up
    p.wait(10)
    with Logbook(lb) as book:
        assert book.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (s,) = book.sessions()
        assert s["ended_how"] is None  # nobody closed it
        t = np.concatenate([c["t"] for c in book.raw_chunks(s["id"])])
        lost = reached - t[-1]
        print(f"killed at {reached:.2f} s of data; newest stored sample {t[-1]:.2f} s: lost {lost:.2f} s")
        assert lost <= 1.0 + 0.25  # the 1 s commit interval, plus the replay's own block pacing
        assert np.all(np.diff(t) > 0) and t[0] < 0.01  # a complete prefix
    short = tmp_path / "short.toml"  # the next start (a short replay at speed) marks it
    short.write_text(cfg.read_text().replace("speed = 1.0", "speed = 500.0"))
    r = stackcue("run", "--config", str(short))
    assert r.returncode == 0 and "1 earlier session(s) ended uncleanly" in r.stderr, r.stderr
    with Logbook(lb) as book:
        old = book.session(s["id"])
        assert old["ended_how"] == "unclean" and old["duration_s"] == pytest.approx(t[-1], abs=0.01)
        assert len(book.sessions()) == 2
