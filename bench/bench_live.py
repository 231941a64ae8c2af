"""Benchmark of the live service (issues 5 and 18), each figure printed with PASS/FAIL against its target:

1. latency from reading the block with the sample that confirms a drift to the alert arriving at a
   subscriber on loopback: p50 / p99 over >= 100 alerts (target p99 <= 30 ms);
2. CPU of `stackcue run` at 200 Hz with two sensors, real time, MQTT and the logbook on (issue 18: <= 2 % of
   one core);
3. resident memory of `stackcue run` over a 1-hour replay at high speed (target <= 80 MB, and flat: at most
   5 MB more at 90 % of the hour than at 10 %).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from broker import Broker  # noqa: E402
from timing import verdict  # noqa: E402

from stackcue.dsp.params import AlertParams, PipelineParams  # noqa: E402
from stackcue.dsp.pipeline import Pipeline  # noqa: E402
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate, write_simulation  # noqa: E402
from stackcue.firmware_bridge.replay import ReplaySource  # noqa: E402
from stackcue.service.mqtt_connection import MqttSettings  # noqa: E402
from stackcue.service.mqtt_publisher import MqttPublisher  # noqa: E402

OUT = ROOT / "out" / "bench"
EXE = str(Path(sys.executable).parent / "stackcue")


def recording(minutes: float, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    csv = OUT / name
    if not csv.exists():
        write_simulation(simulate(SimParams(minutes=minutes, rate_hz=200, trunk=True, seed=11)), csv)
    return csv


def latency(broker: Broker) -> None:
    csv = recording(30, "run_30min_200hz_trunk.csv")
    # a hair-trigger configuration so that a 30-minute run gives hundreds of alerts
    params = PipelineParams(
        alerts=AlertParams(
            anterior_tilt_deg=2.0,
            posterior_tilt_deg=1.0,
            hysteresis_deg=0.0,
            confirm_strides=1,
            clear_strides=1,
            quiet_s=0.0,
            remind_every_s=0.0,
        )
    )
    got: dict[int, float] = {}
    ready = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:6]}")
    sub.on_connect = lambda c, *a: c.subscribe("stackcue/bench/alert", 1)
    sub.on_subscribe = lambda *a: ready.set()

    def on_message(c, u, msg):
        import json

        got[json.loads(msg.payload)["alert_id"]] = time.monotonic()

    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    ready.wait(10)
    pub = MqttPublisher(MqttSettings(host=broker.host, port=broker.port, runner_id="bench"), "bench")
    pub.start()
    while not pub.connected:
        time.sleep(0.05)
    pipe = Pipeline(params, strict_calibration=False)
    sent: dict[int, float] = {}
    for block in ReplaySource(csv, speed=30.0, block_s=0.05):  # live-sized blocks, 30x real time
        t_read = time.monotonic()
        for ev in pipe.feed(block):
            if ev["type"] == "alert":
                sent[ev["id"]] = t_read
            pub.publish_event(ev)
    time.sleep(1.0)
    pub.stop()
    sub.loop_stop()
    lat = sorted((got[i] - sent[i]) * 1000 for i in sent if i in got)
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
    print(
        f"alert latency (block read -> subscriber), {len(lat)} of {len(sent)} alerts: "
        f"p50 {statistics.median(lat):.2f} ms, p99 {p99:.2f} ms, max {lat[-1]:.2f} ms"
    )
    print(f"  {verdict(p99 <= 30.0)} p99 <= 30 ms")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks of 10 ms


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_config(broker: Broker, csv: Path, speed: float, work: Path) -> Path:
    cfg = work / f"run_{speed:g}.toml"
    cfg.write_text(
        f'[runner]\nid = "bench"\n[source]\nkind = "replay"\npath = "{csv}"\nspeed = {speed}\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'[logbook]\npath = "{work / "logbook.sqlite"}"\n'
    )
    return cfg


def cpu(broker: Broker, work: Path, seconds: float = 60.0) -> None:
    csv = recording(60, "run_60min_200hz_trunk.csv")
    p = subprocess.Popen(
        [EXE, "run", "--config", str(run_config(broker, csv, 1.0, work))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(15.0)  # past start-up (imports) and calibration
    c0, t0 = proc_cpu_s(p.pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = proc_cpu_s(p.pid), time.monotonic()
    p.terminate()
    p.wait(10)
    pct = 100 * (c1 - c0) / (t1 - t0)
    print(f"stackcue run, 200 Hz, two sensors, real time, MQTT + logbook: {pct:.2f} % of one core over {t1 - t0:.0f} s")
    print(f"  {verdict(pct <= 2.0)} <= 2 % of one core")


def memory(broker: Broker, work: Path) -> None:
    csv = recording(60, "run_60min_200hz_trunk.csv")
    p = subprocess.Popen(
        [EXE, "run", "--config", str(run_config(broker, csv, 60.0, work))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples = []
    t0 = time.monotonic()
    while p.poll() is None:
        try:
            samples.append((time.monotonic() - t0, proc_rss_mb(p.pid)))
        except FileNotFoundError:
            break
        time.sleep(1.0)
    rss = [r for _, r in samples if r > 0]
    n = len(rss)
    print(
        f"stackcue run, 1-hour replay at 60x ({samples[-1][0]:.0f} s): RSS at 10 % {rss[n // 10]:.0f} MB, "
        f"at 50 % {rss[n // 2]:.0f} MB, at 90 % {rss[9 * n // 10]:.0f} MB, max {max(rss):.0f} MB"
    )
    print(f"  {verdict(max(rss) <= 80.0)} max <= 80 MB")
    print(f"  {verdict(rss[9 * n // 10] - rss[n // 10] <= 5.0)} flat: <= 5 MB more at 90 % than at 10 %")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="stackcue-bench-"))
    broker = Broker(work).start()
    try:
        latency(broker)
        memory(broker, work)
        cpu(broker, work)
    finally:
        broker.stop()
        broker.cleanup()


if __name__ == "__main__":
    main()
