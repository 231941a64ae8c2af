"""The ``stackcue`` command.

User mistakes (a bad file, a wrong key, a refused calibration) print one
line and exit with status 2; a traceback would be a bug.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

from stackcue.errors import ConfigError, InputError, SensorError, StackcueError, StorageError
from stackcue.firmware_bridge.source import LIVE_SOURCE_KINDS

from . import (  # their heavy libraries (fit-tool, matplotlib) load only when they run
    accel_cal,
    ctl,
    export,
    report_html,
    scan,
)
from .argtypes import EMULATED_MINUTES_RANGE, SPEED_RANGE, logbook_options, positive_float, ranged_float, seed
from .hub import cli as hub_cli  # light too: Starlette and SQLAlchemy load only when a hub command runs
from .output_files import check_output, is_write_through
from .sync import cli as sync_cli  # light: httpx loads only when sync runs
from .web import cli as web_cli  # light: Starlette, uvicorn and cryptography load only when serve/certs run

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stackcue", description="Posture biofeedback for runners.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("analyze", help="analyse a recording (exchange CSV) with the live pipeline")
    a.add_argument("file", nargs="?", help="recording in the exchange CSV format")
    a.add_argument(
        "--session",
        metavar="ID",
        help="analyse a session's raw samples from the logbook instead of a file (id, prefix or latest)",
    )
    a.add_argument("--save", action="store_true", help="store the analysed recording in the logbook as a session")
    a.add_argument("--logbook", metavar="FILE", help="logbook file (default: [logbook] path)")
    a.add_argument("--jsonl", action="store_true", help="print one JSON event a line instead of a summary")
    a.add_argument(
        "--provisional",
        action="store_true",
        help="with --jsonl: also print each stride's preview (stride_provisional), as the live run publishes it",
    )
    a.add_argument("--config", metavar="FILE", help="configuration file overriding config/default.toml")
    a.add_argument(
        "--calibration",
        metavar="FILE",
        help="use a saved calibration (a calibration event as JSON) instead of the routine",
    )
    a.add_argument("--save-calibration", metavar="FILE", help="write the accepted calibration to FILE")
    a.add_argument("--strict", action="store_true", help="refuse the file at its first bad row")
    a.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: on a terminal, for big files)",
    )

    accel_cal.add_parser(sub)

    s = sub.add_parser("simulate", help="write a synthetic run (exchange CSV) and its truth files")
    s.add_argument("-o", "--output", required=True, metavar="FILE", help="CSV to write")
    s.add_argument("--minutes", type=ranged_float(0.25, 600.0), default=10.0, help="running time (default 10)")
    s.add_argument("--trunk", action="store_true", help="add a sternum sensor")
    s.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    s.add_argument("--rate", type=positive_float, default=200.0, help="nominal sample rate in Hz (default 200)")
    s.add_argument("--cadence", type=ranged_float(100.0, 240.0), default=170.0, help="steps per minute (default 170)")
    s.add_argument("--speed", type=ranged_float(1.0, 12.0), default=3.3, help="running speed m/s (default 3.3)")
    s.add_argument("--no-episodes", action="store_true", help="steady posture, no drift episodes")
    s.add_argument(
        "--running-tilt",
        type=ranged_float(-5.0, 25.0),
        default=2.0,
        metavar="DEG",
        help="how much further forward the runner tilts running than standing (default 2; real runners 6-13)",
    )
    s.add_argument(
        "--tumble",
        action="store_true",
        help="instead of the run, the same sensors (same --seed and options) set still on a box's six faces, "
        "for `stackcue accel-cal`",
    )
    s.add_argument("--ideal", action="store_true", help="ideal sensor: no bias, noise, jitter or gaps")
    s.add_argument(
        "--no-speed-changes",
        action="store_true",
        help="constant speed: no stride-to-stride speed changes or slow speed drift (the idealised runner)",
    )
    pr = sub.add_parser("probe", help="find the MPU-6050s on the I2C bus and check them at rest")
    pr.add_argument("--bus", type=int, help="I2C bus number (default from the configuration: 1)")
    pr.add_argument(
        "--seconds", type=ranged_float(0.5, 600.0), default=3.0, help="seconds at rest per sensor (default 3)"
    )
    pr.add_argument("--config", metavar="FILE", help="configuration file")
    pr.add_argument("--emulate", action="store_true", help="probe emulated sensors instead of /dev/i2c-N")

    r = sub.add_parser("record", help="record the sensors to an exchange CSV (Ctrl-C ends it cleanly)")
    r.add_argument("-o", "--output", required=True, metavar="FILE", help="CSV to write")
    r.add_argument("--seconds", type=positive_float, help="stop after this much data (default: until Ctrl-C)")
    r.add_argument("--bus", type=int, help="I2C bus number (default from the configuration: 1)")
    r.add_argument("--config", metavar="FILE", help="configuration file")
    r.add_argument(
        "--emulate", action="store_true", help="record the synthetic runner on emulated MPU-6050s on an emulated bus"
    )
    r.add_argument(
        "--speed",
        type=ranged_float(*SPEED_RANGE),
        default=1.0,
        help="with --emulate: run the emulated time this many times faster (default 1)",
    )
    r.add_argument(
        "--minutes",
        type=ranged_float(*EMULATED_MINUTES_RANGE),
        default=10.0,
        help="with --emulate: length of the simulated run (default 10)",
    )
    r.add_argument("--seed", type=seed, default=0, help="with --emulate: random seed")
    rn = sub.add_parser(
        "run", help="the live service (a daemon): sensors → posture → alerts over MQTT; sessions on command"
    )
    rn.add_argument("--config", metavar="FILE", help="configuration file")
    rn.add_argument("--source", choices=LIVE_SOURCE_KINDS, help="override [source] kind")
    rn.add_argument("--path", metavar="FILE", help="override [source] path (replay)")
    rn.add_argument("--speed", type=ranged_float(*SPEED_RANGE), help="override [source] speed (replay, emulated)")
    rn.add_argument("--jsonl", action="store_true", help="log every event as a JSON line on stdout")

    im = sub.add_parser("import", help="analyse a recording (exchange CSV) and store it in the logbook")
    im.add_argument("file", help="recording in the exchange CSV format (e.g. from `export --what samples`)")
    logbook_options(im)

    se = sub.add_parser("sessions", help="list the sessions in the logbook")
    se.add_argument("--runner", metavar="ID", help="only this runner's sessions")
    se.add_argument(
        "--since",
        metavar="DATE",
        help="only sessions started on or after DATE (2026-11-01, or 7d); those of an unknown start are counted",
    )
    se.add_argument("--delete", metavar="SESSION", help="delete one session (id, prefix or latest) with --yes")
    se.add_argument("--yes", action="store_true", help="with --delete: do it (without, only say what would go)")
    logbook_options(se)

    no = sub.add_parser("note", help="show, set or add to a session's notes (what the run was, how it felt)")
    no.add_argument("session", metavar="SESSION", help="id, unique prefix or latest")
    no.add_argument("text", nargs="*", help="the notes (without: show them)")
    no.add_argument("--append", metavar="TEXT", help="add TEXT as a new line to the notes")
    no.add_argument("--clear", action="store_true", help="remove the notes")
    logbook_options(no)

    ru = sub.add_parser("runner", help="a runner's whole data: export it or delete it")
    ru.add_argument("action", choices=["export", "delete"])
    ru.add_argument("runner_id", metavar="RUNNER", help="the runner id (as in `stackcue sessions`)")
    ru.add_argument("-o", "--output", metavar="FILE.zip", help="export: the zip file to write")
    ru.add_argument("--yes", action="store_true", help="delete: do it (without --yes it only says what would go)")
    logbook_options(ru)

    export.add_parser(sub)
    report_html.add_parser(sub)
    scan.add_parser(sub)
    ctl.add_parser(sub)
    web_cli.add_parsers(sub)
    hub_cli.add_parsers(sub)
    sync_cli.add_parser(sub)

    cu = sub.add_parser("cue", help="speak or buzz the session's alerts and system events (MQTT subscriber)")
    cu.add_argument("--config", metavar="FILE", help="configuration file")
    cu.add_argument(
        "--device", default="pi", help="this device's name; it cues only when it equals [cue] owner (default pi)"
    )
    cu.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the cues instead of speaking or buzzing them (try-out, demo)",
    )
    return p


def with_accel_calibration(cfg, source):
    """``source`` correcting its sensors by the configuration's [accel_calibration]."""
    for segment, calibration in cfg.accel_calibrations().items():
        source.correct_accel(segment, calibration)
    return source


def open_live_source(cfg, kind: str, path: str, speed: float):
    """The configured live source (one-line errors for a wrong choice), its sensors' [accel_calibration] applied.

    A replay's samples were corrected (or not) when they were recorded: it is replayed as it is."""
    from stackcue.firmware_bridge.source import open_source

    if kind == "replay":
        if not path:
            raise ConfigError('[source] kind = "replay" needs [source] path (or --path)')
        return open_source("replay", path=path, speed=speed)
    if kind == "emulated":
        opts = cfg.mpu6050_options()
        opts["trunk"] = "on" if opts["trunk"] == "auto" else opts["trunk"]
        return with_accel_calibration(
            cfg, open_source("emulated", minutes=cfg["source"]["emulated_minutes"], speed=speed, **opts)
        )
    if kind == "ble":
        from .scan import ble_options

        return with_accel_calibration(cfg, open_source("ble", **ble_options(cfg)))
    return with_accel_calibration(cfg, open_source("mpu6050", **cfg.mpu6050_options()))


def cmd_run(args: argparse.Namespace) -> int:
    """`stackcue run`, once a runner: a second run for the same runner refuses to start (service/runlock.py)."""
    from .config import load_config
    from .runlock import acquire_run_lock

    cfg = load_config(args.config)
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    run_lock = acquire_run_lock(cfg.runner_id, cfg.logbook_path, f"started {since}")
    try:
        from .run_daemon import run_daemon

        return run_daemon(args)
    finally:
        run_lock.release()


def cmd_cue(args: argparse.Namespace) -> int:
    import logging

    from .config import load_config
    from .cue import from_config, serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    client = from_config(load_config(args.config), args.device, print_only=args.print_only)
    print(f"stackcue cue: {client.describe()}", file=sys.stderr)
    code = serve(client)
    print(
        f"stackcue cue: stopped; {client.counts['queued']} cues, {client.counts['duplicate']} duplicates, "
        f"{client.counts['stale']} stale; MQTT {client.status}",
        file=sys.stderr,
    )
    return code


def cmd_probe(args: argparse.Namespace) -> int:
    from stackcue.firmware_bridge.devices import device_factory

    from .config import load_config
    from .probe import probe_address

    cfg = load_config(args.config)
    opts = cfg.mpu6050_options()
    bus_number = args.bus if args.bus is not None else opts["bus"]
    devices = device_factory(
        args.emulate, scene="still", pelvis_address=opts["pelvis_address"], trunk_address=opts["trunk_address"]
    )
    bus = devices.i2c_bus(bus_number)
    clock, sleep = devices.clock, devices.sleep
    print(f"probing {devices.describe(f'I2C bus {bus_number}')} (keep the sensors still)")
    found = 0
    healthy = 0
    for role, addr in (("pelvis", opts["pelvis_address"]), ("trunk", opts["trunk_address"])):
        res = probe_address(
            bus, addr, rate_hz=opts["rate_hz"], seconds=args.seconds, clock=clock, sleep=sleep, bus_number=bus_number
        )
        if not res.found:
            print(f"0x{addr:02x} ({role}): nothing answers")
            continue
        found += 1
        healthy += res.ok
        if res.lines:
            print(f"{res.lines[0]}  [{role}]")
            print("\n".join(res.lines[1:]))
        else:
            print(f"0x{addr:02x} ({role}): {res.message}")
    if not found:
        from stackcue.errors import SourceError

        raise SourceError(
            f"no MPU-6050 found on I2C bus {bus_number} (0x{opts['pelvis_address']:02x}, "
            f"0x{opts['trunk_address']:02x}): check wiring, power and the AD0 pin"
        )
    return 0 if healthy == found else 1


def _new_recording_path(name: str, command: str) -> Path:
    """Where ``record``/``simulate`` write a recording: never ``-``; ``record`` never over an earlier recording
    (a Ctrl-C right after opening it would leave it empty); created owner-only (raw data of a runner's body)."""
    if name == "-":
        raise InputError(f"{command} writes a file (a recording is not for standard output); give a file name")
    out = Path(name)
    if name.endswith("/") or out.is_dir():
        raise InputError(f"{name}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    if command == "record" and out.is_file() and out.stat().st_size > 0:
        raise InputError(f"{out}: exists; remove it or choose another name (an earlier recording is not overwritten)")
    if not is_write_through(out):
        try:
            os.close(os.open(out, os.O_WRONLY | os.O_CREAT, 0o600))
            os.chmod(out, 0o600)
        except OSError as exc:
            raise StorageError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return out


def cmd_record(args: argparse.Namespace) -> int:
    from stackcue.firmware_bridge.devices import device_factory
    from stackcue.firmware_bridge.mpu6050_source import MPU6050Source

    from .config import load_config
    from .record import record

    cfg = load_config(args.config)
    opts = cfg.mpu6050_options()
    if args.bus is not None:
        opts["bus"] = args.bus
    out = _new_recording_path(args.output, "record")
    devices = device_factory(
        args.emulate,
        minutes=args.minutes,
        trunk=opts["trunk"] != "off",
        seed=args.seed,
        speed=args.speed,
        pelvis_address=opts["pelvis_address"],
        trunk_address=opts["trunk_address"],
    )
    source = with_accel_calibration(cfg, MPU6050Source(devices=devices, **opts))
    segs = "pelvis + trunk" if source.has_trunk else "pelvis"
    print(
        f"recording {segs} at {source.meta['rate']} Hz to {out}" + (" (Ctrl-C to stop)" if not args.seconds else ""),
        file=sys.stderr,
    )
    stats = record(source, out, seconds=args.seconds, runner=cfg.runner_id)
    t = stats["t_last"] or 0.0
    print(
        f"wrote {out}: {stats['samples']} samples, {t:.1f} s, {stats['samples'] / t if t else 0:.1f} Hz, "
        f"{stats['gaps']} gaps ({stats['gap_s']:.2f} s); {stats['reason']}"
    )
    if not stats["samples"]:
        raise SensorError(f"no samples were recorded to {out} ({stats['reason']}): is the sensor streaming?")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analyze import analyze_file, load_calibration, write_calibration
    from .config import load_config
    from .session_store import analyze_session, open_logbook, store_recording

    if (args.file is None) == (args.session is None):
        raise InputError("give a recording FILE or --session ID (one of them)")
    if args.session is not None and args.save:
        raise InputError("--save stores a recording file; a --session is in the logbook already")
    if args.provisional and (not args.jsonl or args.save or args.session is not None):
        raise InputError("--provisional adds the stride previews to --jsonl of a FILE (not with --save or --session)")
    if args.save_calibration:  # before the whole analysis: the same refusals write_output would make after it
        check_output(args.save_calibration, "--save-calibration")
    cfg = load_config(args.config)
    cal = load_calibration(args.calibration) if args.calibration else None
    if args.session is not None:
        with open_logbook(cfg, args.logbook) as book:
            events = analyze_session(book, args.session, cfg, jsonl=args.jsonl, calibration=cal)
    elif args.save:
        sid, events = store_recording(
            args.file,
            cfg,
            jsonl=args.jsonl,
            strict=args.strict,
            calibration=cal,
            progress=args.progress,
            logbook=args.logbook,
        )
        print(f"stored as session {sid} in {args.logbook or cfg.logbook_path}", file=sys.stderr)
    else:
        events = analyze_file(
            args.file,
            cfg,
            jsonl=args.jsonl,
            strict=args.strict,
            calibration=cal,
            progress=args.progress,
            provisional=args.provisional,
        )
    if args.save_calibration:
        write_calibration(events, args.save_calibration)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import io

    from .config import load_config
    from .report_text import clock
    from .session_store import store_recording

    cfg = load_config(args.config)
    sid, events = store_recording(args.file, cfg, origin="import", out=io.StringIO(), logbook=args.logbook)
    summ = next(e for e in events if e["type"] == "summary")
    print(
        f"imported {args.file} as session {sid} in {args.logbook or cfg.logbook_path}: "
        f"{clock(summ['duration_s'])}, {summ['strides']} strides, {summ['alerts']} alerts"
    )
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from .config import load_config
    from .session_store import open_logbook
    from .sessions_table import parse_since, sessions_table

    since = parse_since(args.since) if args.since else None
    with open_logbook(load_config(args.config), args.logbook, readonly=not args.delete) as book:
        if args.delete:
            from .session_store import find_session
            from .sync import deletion, state

            session = find_session(book, args.delete)
            sid, cfg = session["id"], load_config(args.config)
            # the coach's hub hears of it too: the one the runner consented to, and any that acknowledged it
            hubs = (deletion.consented_hub(cfg) | state.hubs_holding(book.conn, [sid])) if session["runner"] else set()
            on_hubs = f" and on hub {', '.join(map(repr, sorted(hubs)))}" if hubs else ""
            if not args.yes:
                print(f"would delete session {sid} from {book.path}{on_hubs}; add --yes to delete it")
                return 0
            if hubs:
                state.queue_session_deletion(book.conn, session["runner"], hubs, sid)
            book.delete_session(sid)
            book.vacuum()
            print(f"deleted session {sid} from {book.path}")
            return deletion.send_now(cfg, book, print) if hubs else 0
        print(sessions_table(book, runner=args.runner, since_epoch=since))
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    from .config import load_config
    from .session_store import find_session, open_logbook

    text = " ".join(args.text).strip()
    added = (args.append or "").strip()
    if sum(map(bool, (text, added, args.clear))) > 1:
        raise InputError("note: give one of TEXT, --append TEXT or --clear")
    if args.append is not None and not added:
        raise InputError("note: --append needs a TEXT that is not empty")
    writes = bool(text or added or args.clear)
    with open_logbook(load_config(args.config), args.logbook, readonly=not writes) as book:
        s = find_session(book, args.session)
        if args.clear:
            book.set_notes(s["id"], None)
            print(f"removed the notes of session {s['id']}")
        elif text or added:
            notes = f"{s['notes']}\n{added}" if added and s["notes"] else (added or text)
            book.set_notes(s["id"], notes)
            print(f"notes of session {s['id']}:\n{notes}")
        else:
            print(s["notes"] if s["notes"] else f"session {s['id']} has no notes")
    return 0


def cmd_runner(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runner_data import delete_runner, export_runner
    from .session_store import open_logbook

    with open_logbook(load_config(args.config), args.logbook, readonly=args.action == "export") as book:
        if args.action == "export":
            if not args.output:
                raise InputError("runner export needs -o FILE.zip")
            n, size = export_runner(book, args.runner_id, Path(args.output))
            print(f"wrote {args.output}: {n} sessions of runner {args.runner_id!r}, {size / 1e6:.1f} MB")
        else:
            from .sync import deletion

            cfg = load_config(args.config)
            print(delete_runner(book, args.runner_id, really=args.yes, hubs=deletion.consented_hub(cfg)))
            if args.yes:
                return deletion.send_now(cfg, book, print)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from stackcue.dsp.params import RATE_MAX_HZ, RATE_MIN_HZ
    from stackcue.firmware_bridge.emulated.simulator import (
        SimParams,
        devices_of,
        simulate,
        simulate_tumble,
        write_simulation,
    )

    if not RATE_MIN_HZ <= args.rate <= RATE_MAX_HZ:
        raise InputError(f"--rate {args.rate:g} is outside {RATE_MIN_HZ:.0f}–{RATE_MAX_HZ:.0f} Hz")
    out = _new_recording_path(args.output, "simulate")
    if is_write_through(out):  # its truth files go beside it: not into /dev
        raise InputError(f"{out}: simulate writes truth files beside the recording; give a file in a folder")
    t0 = time.monotonic()
    params = SimParams(
        minutes=args.minutes,
        rate_hz=args.rate,
        trunk=args.trunk,
        seed=args.seed,
        cadence_spm=args.cadence,
        speed_m_s=args.speed,
        episodes=not args.no_episodes,
        sensor_errors=not args.ideal,
        gaps=not args.ideal,
        speed_changes=not args.no_speed_changes,
        running_tilt_deg=args.running_tilt,
    )
    run = simulate_tumble(devices_of(params), args.rate, args.seed) if args.tumble else simulate(params)
    try:
        truth_csv, truth_json = write_simulation(run, out)
    except OSError as exc:
        raise StorageError(f"{out}: cannot write ({exc.strerror})") from None
    n = len(run.block)
    print(
        f"wrote {out} ({n} samples, {run.block.t[-1] - run.block.t[0]:.0f} s"
        f"{', pelvis + trunk' if args.trunk else ''}) and {truth_csv.name}, {truth_json.name} "
        f"in {time.monotonic() - t0:.1f} s; "
        + (
            f"{len(run.info['faces'])} faces held {run.info['hold_s']:g} s: `stackcue accel-cal {out}`"
            if args.tumble
            else "episodes: " + (", ".join(e["kind"] for e in run.info.get("episodes", [])) or "none")
        )
    )
    return 0


COMMANDS = {
    "analyze": cmd_analyze,
    "simulate": cmd_simulate,
    "accel-cal": accel_cal.cmd_accel_cal,
    "probe": cmd_probe,
    "record": cmd_record,
    "run": cmd_run,
    "cue": cmd_cue,
    "import": cmd_import,
    "sessions": cmd_sessions,
    "note": cmd_note,
    "runner": cmd_runner,
    "export": export.cmd_export,
    "report": report_html.cmd_report,
    "scan": scan.cmd_scan,
    "ctl": ctl.cmd_ctl,
    "serve": web_cli.cmd_serve,
    "certs": web_cli.cmd_certs,
    "hub": hub_cli.cmd_hub,
    "sync": sync_cli.cmd_sync,
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# Commands that store into the logbook end on SIGTERM (systemd, `timeout`, kill) and SIGHUP (a closed terminal)
# as on Ctrl-C: the half-stored session is removed, so a retry is not refused as "already being stored".
_STORING = ("import", "analyze")


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed escaped, never a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    before = {}
    if args.command in _STORING and threading.current_thread() is threading.main_thread():
        before = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _dispatch(args)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except StackcueError as exc:
        print(f"stackcue {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"stackcue {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except UnicodeEncodeError as exc:  # an argument with bytes that are not UTF-8 (a Latin-1 file name, a note)
        bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else ""
        print(
            f"stackcue {args.command}: an argument is not UTF-8 text ({bad.encode('utf-8', 'surrogateescape')!r} "
            "in it); rename the file or retype the text",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except sqlite3.Error as exc:  # a logbook damaged past what opening it checks, or read-only
        print(f"stackcue {args.command}: logbook {_logbook_of(args)}: {_sqlite_words(exc)}", file=sys.stderr)
        return EXIT_USAGE


def _logbook_of(args: argparse.Namespace) -> str:
    """The logbook a command used (SQLite's errors do not name the file)."""
    path = getattr(args, "logbook", None)
    if path is None:
        try:
            from .config import load_config

            path = load_config(getattr(args, "config", None)).logbook_path
        except StackcueError:
            path = None
    return str(path) if path else "(the configured [logbook] path)"


def _sqlite_words(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "readonly" in text:
        return f"cannot write ({text}: check the file's and its folder's permissions)"
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return f"damaged ({text}); keep a copy, and try: sqlite3 FILE '.recover' > dump.sql"
    return text


if __name__ == "__main__":
    sys.exit(main())
