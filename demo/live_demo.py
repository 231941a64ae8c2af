"""The live demo: a private mosquitto, `stackcue run` on a replayed simulated run at high speed, a
subscriber (the "phone") printing alerts as they arrive, and the cue client printing what it would say.

Started and stopped by one command (`make demo`); nothing is left running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from broker import Broker  # noqa: E402  (the same private-broker helper the tests use)

EXE = str(Path(sys.executable).parent / "stackcue")


def main() -> int:
    csv = ROOT / "out" / "demo" / "run.csv"
    if not csv.exists():
        csv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([EXE, "simulate", "-o", str(csv), "--minutes", "10", "--trunk", "--seed", "7"], check=True)
    work = Path(tempfile.mkdtemp(prefix="stackcue-demo-"))
    broker = Broker(work).start()
    print(f"mosquitto on 127.0.0.1:{broker.port}; replaying {csv.name} at 12x through `stackcue run`")
    cfg = work / "demo.toml"
    out = csv.parent
    book = out / "logbook.sqlite"
    for suffix in ("", "-wal", "-shm"):  # a fresh logbook each demo
        Path(f"{book}{suffix}").unlink(missing_ok=True)
    cfg.write_text(
        f'[runner]\nid = "demo"\n[source]\nkind = "replay"\npath = "{csv}"\nspeed = 12.0\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n[logbook]\npath = "{book}"\n'
    )
    t0 = time.monotonic()

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")  # one write: the line and its newline never split around another process's
        sys.stdout.flush()

    def on_message(client, userdata, msg):
        p = json.loads(msg.payload) if msg.payload[:1] == b"{" else msg.payload.decode()
        stamp = f"[{time.monotonic() - t0:5.1f} s]"
        if msg.topic.endswith("/alert"):
            say(
                f"{stamp} phone   ALERT #{p['alert_id']} {p['kind']} {p['value_deg']:+.1f}° "
                f"at t={p['t']:.1f} s (age {p['age_s'] * 1000:.1f} ms)"
            )
        elif msg.topic.endswith("/event") and p.get("type") in ("guide", "calibration", "clear"):
            text = p.get("say") or (
                f"clear {p['kind']}"
                if p["type"] == "clear"
                else ("calibration accepted" if p.get("ok") else f"refused: {p.get('reason')}")
            )
            say(f"{stamp} phone   {p['type']}: {text}")
        elif msg.topic.endswith("/session"):
            say(f"{stamp} phone   session summary: {p['strides']} strides, {p['alerts']} alerts")

    phone = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-phone-{uuid.uuid4().hex[:6]}")
    phone.on_message = on_message
    phone.on_connect = lambda c, *a: c.subscribe(
        [("stackcue/demo/alert", 1), ("stackcue/demo/event", 1), ("stackcue/demo/session", 1)]
    )
    phone.connect("127.0.0.1", broker.port)
    phone.loop_start()
    cue = subprocess.Popen([EXE, "cue", "--config", str(cfg), "--print"], stdout=sys.stdout, stderr=sys.stderr)
    try:
        run = subprocess.run([EXE, "run", "--config", str(cfg)], stdout=subprocess.DEVNULL, timeout=300)
        time.sleep(1.0)
        print(f"stackcue run exited with {run.returncode} after {time.monotonic() - t0:.1f} s")
        if run.returncode:
            return run.returncode
        print("\n--- the coach's side: the logbook, a report and a FIT file ---")
        for args in (
            ["note", "latest", "demo run: six drift episodes, replayed at 12x"],
            ["sessions"],
            ["report", "latest", "-o", str(out / "report.html")],
            ["export", "latest", "--format", "fit", "-o", str(out / "run.fit")],
        ):
            print("$ stackcue " + " ".join(args), flush=True)
            subprocess.run([EXE, *args, "--config", str(cfg)], check=True)
        print(f"open {out / 'report.html'} in a browser")
        return 0
    finally:
        cue.terminate()
        cue.wait(5)
        phone.loop_stop()
        phone.disconnect()
        broker.stop()
        broker.cleanup()


if __name__ == "__main__":
    sys.exit(main())
