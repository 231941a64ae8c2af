"""The readable summary of an analysed run, for a runner or a coach at a terminal."""

from __future__ import annotations

from stackcue.dsp.alert_kinds import ALERT_KINDS

KIND_NAMES = {k.name: k.label for k in ALERT_KINDS.values()}


def clock(seconds: float) -> str:
    """m:ss.s or h:mm:ss for times on the recording's clock."""
    s = round(max(seconds, 0.0), 1)  # round first: 59.96 s is 1:00.0, not 0:60.0
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{int(h)}:{int(m):02d}:{int(sec):02d}"
    return f"{int(m)}:{sec:04.1f}"


def quality_text(cal: dict) -> str:
    """A calibration's quality: one figure when its segments agree (or there is one), else per segment."""
    q = {seg: d.get("quality") for seg, d in (cal.get("segments") or {}).items() if isinstance(d, dict)}
    vals = {f"{v:.2f}" if isinstance(v, int | float) else "?" for v in q.values()}
    if len(vals) <= 1:
        return f"quality {vals.pop() if vals else '?'}"
    each = (f"{seg} {v:.2f}" if isinstance(v, int | float) else f"{seg} ?" for seg, v in q.items())
    return "quality " + ", ".join(each)


def recalibration_line(cal: dict) -> str:
    """Where the calibration in use changed: "re-calibrated at 12:31.0 (segment 1, quality 1.00)"."""
    return f"re-calibrated at {clock(cal.get('t') or 0.0)} (segment {cal.get('segment', '?')}, {quality_text(cal)})"


_METRIC_NAMES = {"pelvic_tilt_deg": "tilt", "trunk_lean_deg": "lean", "stack_deg": "stack"}
_FROM = {"neutral": "the standing neutral", "first_minutes": "this run's first minutes", "targets": "the target"}


def reference_line(events: list[dict]) -> str | None:
    """Each metric's reference, from the run's ``reference`` events: "Reference: tilt from this run's first
    minutes +7.1° (set at 3:22.0), lean from the standing neutral +0.0°, stack from the standing neutral +0.0°"."""
    refs = [e for e in events if e.get("type") == "reference" and isinstance(e.get("metrics"), dict)]
    if not refs:
        return None
    summ = next((e for e in events if e.get("type") == "summary"), {})
    parts = []
    for field, name in _METRIC_NAMES.items():
        if field in summ and summ[field] is None:  # no trunk sensor: no lean or stack to measure
            continue
        src = refs[0]["metrics"].get(field) or {}
        value, set_t = src.get("value"), None
        for e in refs[1:]:  # a baseline completed later gives the value
            later = e["metrics"].get(field) or {}
            if value is None and later.get("value") is not None:
                value, set_t = later["value"], e.get("t")
        how = _FROM.get(str(src.get("from")), str(src.get("from")))
        if value is None:
            parts.append(f"{name} from {how}: never set (running too short), no {name} alerts")
        else:
            parts.append(f"{name} from {how} {value:+.1f}°" + (f" (set at {clock(set_t)})" if set_t else ""))
    return "Reference: " + ", ".join(parts)


def _stat(name: str, st: dict | None, unit: str = "°", signed: bool = True) -> str:
    if not st:
        return f"{name:<14} no data"
    f = "+.1f" if signed else ".1f"
    return (
        f"{name:<14} mean {st['mean']:{f}}{unit}  sd {st['sd']:.1f}{unit}  "
        f"(10–90%: {st['p10']:{f}} to {st['p90']:{f}}{unit})"
    )


def trunk_missing_line(event: dict, strides: list[dict]) -> str:
    """How many strides of the event's calibration segment lack trunk figures: the ``trunk_missing`` event is
    told once, at the first, and "from 4:18" alone read as "none after 4:18" when most strides still had them."""
    seg = [s for s in strides if s.get("type", "stride") == "stride" and s.get("cal_segment") == event.get("segment")]
    missing = sum(1 for s in seg if s.get("trunk_lean_deg") is None and s["t_end"] >= event["t"] - 1e-3)
    return (
        f"Trunk lean and stack missing on {missing} of {len(seg)} strides, the first ending at {clock(event['t'])}: "
        f"{event.get('reason')}"
    )


def human_summary(events: list[dict], name: str, meta: dict[str, str]) -> str:
    summ = next((e for e in events if e["type"] == "summary"), None)
    cal = [e for e in events if e["type"] == "calibration"]
    lines = [
        f"{name}: {clock(summ['duration_s']) if summ else '?'} recorded"
        + (f", {meta['rate']} Hz" if "rate" in meta else "")
        + (f", runner {meta['runner']}" if "runner" in meta else "")
    ]
    for c in cal:
        if not c.get("ok"):
            lines.append(f"Calibration refused at {clock(c['t'])}: {c['reason']}")
            continue
        if c.get("segment"):  # a re-calibration: the strides after it use it
            line = recalibration_line(c)
            lines.append(line[0].upper() + line[1:])
            continue
        segs = c["segments"]
        parts = []
        for seg, d in segs.items():
            hinge = f"hinge {d['hinge_deg']:.0f}°, quality {d['quality']:.2f}" if d.get("hinge_deg") else "saved"
            parts.append(f"{seg} ({hinge})")
        lines.append(f"Calibration accepted at {clock(c['t'])}: " + "; ".join(parts))
        if c.get("trunk_reason"):
            lines.append(f"  trunk not calibrated: {c['trunk_reason']}")
    ref = reference_line(events)
    if ref:
        lines.append(ref)
    if summ is None:
        return "\n".join(lines)
    lines.append(f"Running: {clock(summ['running_s'])} in {summ['strides']} strides ({summ['steady_strides']} steady)")
    lines.append(_stat("Cadence", summ["cadence_spm"], " spm", signed=False))
    lines.append(_stat("Pelvic tilt", summ["pelvic_tilt_deg"]))
    lines.append(_stat("Trunk lean", summ["trunk_lean_deg"]))
    lines.append(_stat("Stack angle", summ["stack_deg"]))
    lines.append(_stat("Obliquity rng", summ["pelvic_obliquity_range_deg"], signed=False))
    lines.append(_stat("Rotation rng", summ["pelvic_rotation_range_deg"], signed=False))
    tia = {k: v for k, v in summ["time_in_alert_s"].items() if v > 0}
    lines.append(
        "Time in alert: " + (", ".join(f"{KIND_NAMES[k]} {clock(v)}" for k, v in tia.items()) if tia else "none")
    )
    alerts = [e for e in events if e["type"] in ("alert", "clear")]
    if alerts:
        lines.append("Alerts:")
        raised: dict[str, float] = {}
        for e in alerts:
            if e["type"] == "alert":
                raised.setdefault(e["kind"], e["t"])
                extra = " (reminder)" if e.get("reminder") else ""
                if e.get("cue") is False:  # raised and kept, not cued (dsp.cue_policy)
                    extra += f" (not cued: {e.get('cue_skipped') or '?'})"
                lines.append(
                    f"  {clock(e['t']):>9}  {KIND_NAMES[e['kind']]:<22} {e['value_deg']:+.1f}° "
                    f"(threshold {e['threshold_deg']:+.1f}°){extra}"
                )
            else:
                since = raised.pop(e["kind"], None)
                lasted = f" after {clock(e['t'] - since)}" if since is not None else ""
                lines.append(f"  {clock(e['t']):>9}  {KIND_NAMES[e['kind']]:<22} cleared{lasted}")
    elif not summ.get("steady_strides"):  # alerts come from steady strides only
        what = "steady running strides" if summ.get("strides") else "running strides"
        lines.append(f"Alerts: none: no {what} were found, so posture was not checked against the thresholds")
    else:
        lines.append("Alerts: none: posture stayed within the thresholds")
    cues = summ.get("cues")
    if isinstance(cues, dict) and (summ.get("alerts") or summ.get("reminders")):
        skipped = ", ".join(f"{k} {n}" for k, n in (cues.get("not_cued") or {}).items() if n)
        lines.append(
            f"Cues: {cues.get('given', 0)} given"
            + (f", {sum((cues.get('not_cued') or {}).values())} not cued ({skipped})" if skipped else "")
            + f"; faded feedback stage {cues.get('stage', 1)} (docs/cues.md)"
        )
    for e in events:
        if e["type"] == "calibration_suspect":
            lines.append(f"Suspect calibration from {clock(e['t'])}: {e['reason']}")
        elif e["type"] == "trunk_missing":
            lines.append(trunk_missing_line(e, events))
    lines.append(f"Gaps: {summ['gaps']} ({summ['gap_s']:.1f} s)   Rows rejected: {summ.get('rows_rejected', 0)}")
    if summ.get("pauses"):
        lines.append(f"Paused: {summ['pauses']} times, {clock(summ.get('paused_s') or 0.0)} in all (not analysed)")
    return "\n".join(lines)
