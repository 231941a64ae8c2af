"""Alerts per hour of running with the old and the new default references (issue 17), on simulated runs.

Old: every metric from the standing neutral (``[reference] mode = "neutral"``). New: the shipped defaults (the
tilt from the run's first minutes, lean and stack from the standing neutral). Good-posture runs (no episodes)
and drift runs, each with the runner's running tilt above standing at 2° (the simulator's earlier runner), 7°
(the issue's trial) and 10° (RBDS runner 004 at 3.5 m/s). docs/calibration.md reports the figures.
Usage: bench_references.py [MINUTES] [SEEDS]   (defaults: 20 and 1,2,3)
"""

from __future__ import annotations

import sys
from collections import defaultdict

from stackcue.dsp.params import PipelineParams, ReferenceParams
from stackcue.dsp.pipeline import Pipeline
from stackcue.firmware_bridge.emulated.simulator import SimParams, simulate

DEFAULTS = {"old": PipelineParams(reference=ReferenceParams(mode="neutral")), "new": PipelineParams()}
#: a co-alert that belongs to an episode: a simulated trunk-lean episode also puts the ribs ahead of the pelvis
ALSO = {"trunk_lean": {"ribs_ahead_of_pelvis"}}


def in_episode(alert: dict, episodes: list[dict]) -> bool:
    return any(
        (alert["kind"] == e["kind"] or alert["kind"] in ALSO.get(e["kind"], ()))
        and e["t_start"] <= alert["t"] <= e["t_end"] + 8.0
        for e in episodes
    )


def main(minutes: float, seeds: list[int]) -> None:
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for episodes in (False, True):
        for tilt in (2.0, 7.0, 10.0):
            for seed in seeds:
                p = SimParams(
                    minutes=minutes, rate_hz=100, trunk=True, seed=seed, episodes=episodes, running_tilt_deg=tilt
                )
                run = simulate(p)
                eps = run.info["episodes"]
                for name, params in DEFAULTS.items():
                    pipe = Pipeline(params)
                    events = pipe.feed(run.block) + pipe.finish()
                    alerts = [e for e in events if e["type"] == "alert"]
                    caught = sum(
                        any(a["kind"] == e["kind"] and e["t_start"] <= a["t"] <= e["t_end"] + 8.0 for a in alerts)
                        for e in eps
                    )
                    cells[(episodes, tilt, name)].append(
                        {
                            "h": events[-1]["running_s"] / 3600.0,
                            "alerts": len(alerts),
                            "outside": [a["kind"] for a in alerts if not in_episode(a, eps)],
                            "caught": caught,
                            "episodes": len(eps),
                        }
                    )
    print("run            tilt  defaults  alerts/h  outside episodes/h  episodes alerted  running h")
    for (episodes, tilt, name), rows in sorted(cells.items()):
        h = sum(r["h"] for r in rows)
        outside = [k for r in rows for k in r["outside"]]
        kinds = {k: outside.count(k) for k in sorted(set(outside))}
        run = "drift" if episodes else "good posture"
        print(
            f"{run:<14} {tilt:+4.0f}°  {name:<8}  {sum(r['alerts'] for r in rows) / h:8.1f}"
            f"  {len(outside) / h:8.1f} {kinds}  {sum(r['caught'] for r in rows)}/{sum(r['episodes'] for r in rows)}"
            f"  {h:.2f}"
        )


if __name__ == "__main__":
    main(
        float(sys.argv[1]) if len(sys.argv) > 1 else 20.0,
        [int(x) for x in sys.argv[2].split(",")] if len(sys.argv) > 2 else [1, 2, 3],
    )
