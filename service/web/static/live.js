// stackcue live page: Server-Sent Events from /events, commands to /api/command, cues through Web Speech, and
// the continuous cue styles (sonify, beep, haptic) through Web Audio and navigator.vibrate where the phone owns the cue.
// Hand-written, no build step and no network beyond the Pi: the phone may have no internet on the road.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const MUTE_MIN = 10;
  const STRIDES = 90; // about a minute at 1.4 strides/s
  const LABEL = { idle: "Idle", calibrating: "Calibrating", running: "Running", paused: "Paused", sensor_lost: "Sensor lost" };
  const page = { stream: false, broker: false, daemon: null, state: null, owner: $("cuebox").dataset.configuredOwner,
    cuesOn: false, strides: [], pending: null, stopArmed: 0, alerts: [] };
  window.stackcue = page; // for the tests and for a curious runner's console

  // ---------------------------------------------------------------- connection
  function showConn() {
    const up = page.stream && page.broker;
    const el = $("conn");
    el.dataset.state = up ? "connected" : "disconnected";
    let text = "connected";
    if (!page.stream) text = "disconnected: reconnecting to the Pi…";
    else if (!page.broker) text = "disconnected: the Pi's broker is away, reconnecting…";
    else if (page.daemon === "offline") text = "connected; the stackcue service is not running";
    $("conntext").textContent = text;
    $("statecard").classList.toggle("stale", !up);
  }
  function connect() {
    window.stackcueEvents("/events", (up) => { page.stream = up; showConn(); }, {
      broker: (m) => { page.broker = !!m.connected; showConn(); },
      status: (m) => { page.daemon = m.daemon; showConn(); },
      session: onSession,
      provisional: onProvisional,
      state: showState,
      stride: addStride,
      alert: onAlert,
      guide: onGuide,
    });
  }

  // ---------------------------------------------------------------- state
  function fmt(v, digits, sign) {
    if (typeof v !== "number" || !isFinite(v)) return "—";
    const s = v.toFixed(digits);
    return sign && v > 0 ? "+" + s : s;
  }
  function ago(s) { return s < 90 ? Math.round(s) + " s" : Math.round(s / 60) + " min"; }
  function showState(st) {
    page.state = st;
    const name = st.state || "unknown";
    $("statecard").dataset.state = name;
    $("state").textContent = LABEL[name] || name;
    if (st.session && st.session !== page.session) { page.strides = []; draw(); } // a new run: a new chart
    page.session = st.session || page.session;
    const bits = [];
    const ls = st.last_session;
    if (name === "idle") {
      bits.push("Ready. Press Start.");
      if (ls && ls.ended) bits.push("last run: " + ls.ended);
    }
    if (st.session) bits.push("run " + st.session.slice(9, 15).replace(/(\d\d)(\d\d)(\d\d)/, "$1:$2"));
    if (typeof st.calibration_age_s === "number") bits.push("calibrated " + ago(st.calibration_age_s) + " ago");
    if (typeof st.alerts === "number" && name !== "idle") bits.push(st.alerts + (st.alerts === 1 ? " alert" : " alerts"));
    if (typeof st.battery_pct === "number") bits.push("battery " + Math.round(st.battery_pct) + "%");
    const muted = typeof st.muted_until === "number" && st.muted_until * 1000 > Date.now();
    if (muted) bits.push("cues muted until " + new Date(st.muted_until * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    $("statedetail").textContent = bits.join(" · ");
    if (st.last_stride) showFigures(st.last_stride);
    $("lastrun").textContent = ls && ls.ended ? "last run: " + ls.ended : "";
    const enable = {
      "btn-start": ["idle"], "btn-stop": ["calibrating", "running", "paused", "sensor_lost"],
      "btn-recalibrate": ["running", "paused"],
    };
    for (const [id, states] of Object.entries(enable)) $(id).disabled = !states.includes(name);
    const pause = $("btn-pause");
    pause.dataset.cmd = name === "paused" ? "resume" : "pause";
    pause.textContent = name === "paused" ? "Resume" : "Pause";
    pause.className = "btn " + (name === "paused" ? "go" : "warn");
    pause.disabled = !["calibrating", "running", "paused"].includes(name);
    const mute = $("btn-mute");
    mute.dataset.minutes = muted ? "0" : String(MUTE_MIN);
    mute.textContent = muted ? "Cues back on" : "Mute " + MUTE_MIN + " min";
    showAck();
  }
  function showAck() { // the daemon's answer may come before or after the POST's own answer
    const lc = page.state && page.state.last_command;
    if (lc && page.pending && lc.id === page.pending.id) {
      $("ack").textContent = lc.ok ? "✓ " + page.pending.cmd + " done" : "✗ " + page.pending.cmd + " refused: " + (lc.reason || "");
      page.pending = null;
    }
  }
  function showFigures(s) {
    $("tilt").textContent = fmt(s.pelvic_tilt_deg, 1, true);
    $("stack").textContent = fmt(s.stack_deg, 1, true);
    $("cadence").textContent = fmt(s.cadence_spm, 0, false);
  }

  // ---------------------------------------------------------------- chart
  function addStride(s) {
    page.strides.push(s);
    if (page.strides.length > STRIDES) page.strides.shift();
    showFigures(s);
    draw();
  }
  function draw() {
    const c = $("chart"), dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const top = h * 0.64, gap = 8, pts = page.strides;
    const x = (i) => w - (pts.length - 1 - i) * (w / (STRIDES - 1));
    let lim = 5;
    for (const p of pts) for (const k of ["pelvic_tilt_deg", "stack_deg"]) if (typeof p[k] === "number") lim = Math.max(lim, Math.abs(p[k]) * 1.15);
    const ya = (v) => top / 2 - (v / lim) * (top / 2 - 4);
    g.strokeStyle = "#2d333b"; g.lineWidth = 1;
    g.beginPath(); g.moveTo(0, ya(0)); g.lineTo(w, ya(0)); g.stroke();
    g.fillStyle = "#9aa4af"; g.font = "12px system-ui, sans-serif";
    g.fillText("+" + lim.toFixed(0) + "°", 2, 12); g.fillText("−" + lim.toFixed(0) + "°", 2, top - 4);
    const cad = pts.map((p) => p.cadence_spm).filter((v) => typeof v === "number");
    const cmin = cad.length ? Math.min(...cad) - 3 : 150, cmax = cad.length ? Math.max(...cad) + 3 : 190;
    const yc = (v) => h - 3 - ((v - cmin) / (cmax - cmin)) * (h - top - gap - 6);
    g.beginPath(); g.moveTo(0, top + gap / 2); g.lineTo(w, top + gap / 2); g.stroke();
    const line = (key, y, colour) => {
      g.strokeStyle = colour; g.lineWidth = 2.5; g.beginPath();
      let on = false;
      pts.forEach((p, i) => {
        const v = p[key];
        if (typeof v !== "number") { on = false; return; }
        if (on) g.lineTo(x(i), y(v)); else g.moveTo(x(i), y(v));
        on = true;
      });
      g.stroke();
    };
    line("pelvic_tilt_deg", ya, "#f0883e");
    line("stack_deg", ya, "#6cb6ff");
    line("cadence_spm", yc, "#8ddb8c");
  }
  window.addEventListener("resize", draw);

  // ---------------------------------------------------------------- alerts and cues
  function cue(c) {
    if (!c || page.owner !== "phone" || !page.cuesOn) return;
    if (c.say && "speechSynthesis" in window) {
      const u = new SpeechSynthesisUtterance(c.say);
      u.rate = 1.1;
      u.lang = page.language;
      duck(true); // the layer ducks under the voice, as on the Pi
      const back = setTimeout(() => duck(false), 1000 + 450 * c.say.split(/\s+/).length); // if onend never comes
      u.onend = u.onerror = () => { clearTimeout(back); duck(false); };
      window.speechSynthesis.speak(u);
    }
    if (c.vibrate && c.vibrate.length && typeof navigator.vibrate === "function") navigator.vibrate(c.vibrate);
  }
  // why the pipeline's cue policy left an alert out (dsp/cue_policy.py): shown, since the runner sees it but hears nothing
  const SKIPPED_TEXT = { snoozed: "not cued: snoozed", improving: "not cued: you are already coming back",
    fading: "not cued: fewer cues as you improve", ceiling: "not cued: enough cues for these 10 minutes" };
  let bannerTimer = null;
  function onAlert(a) {
    page.alerts.push({ kind: a.kind, alert_id: a.alert_id, received: Date.now() });
    const b = $("banner");
    b.innerHTML = "";
    b.append(document.createTextNode(a.label || a.kind));
    const small = document.createElement("small");
    const skipped = SKIPPED_TEXT[a.cue_skipped] || (a.cue_skipped ? "not cued (" + a.cue_skipped + ")" : "");
    small.textContent = (a.cue && a.cue.say) || skipped || (a.muted ? "cues muted" : "") || (a.reminder ? "reminder" : "");
    b.append(small);
    b.hidden = false;
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(() => { b.hidden = true; }, 12000);
    cue(a.cue);
  }
  $("banner").addEventListener("click", () => { $("banner").hidden = true; });
  function onGuide(m) {
    if (m.say) $("say").textContent = "“" + m.say + "”";
    cue(m.cue);
  }
  const STYLE_TEXT = { sonify: "a noise layer, louder the further off", beep: "a beep a stride, higher the further off",
    haptic: "vibration pulses, faster the further off" };
  function showOwner() {
    const phone = page.owner === "phone";
    $("btn-cues").hidden = !phone || page.cuesOn;
    const style = STYLE_TEXT[sound.style] ? " Style: " + sound.style + " (" + STYLE_TEXT[sound.style] + ")." : "";
    $("cueowner").textContent = phone
      ? (page.cuesOn ? "This phone speaks the cues (keep the page open)." + style : "This phone owns the cues: tap below so it may speak." + style)
      : page.owner === "none" ? "No device speaks cues this session." : "The Pi speaks the cues (cue owner: " + page.owner + ").";
  }
  function onSession(m) {
    page.owner = m.cue_owner;
    if (m.language) page.language = m.language;
    if (m.sound) sound.map = m.sound;
    if (m.style && m.style !== sound.style) { sound.style = m.style; if (page.cuesOn) buildLayer(); }
    showOwner();
  }
  $("btn-cues").addEventListener("click", () => {
    page.cuesOn = true; // browsers let a page speak (and play Web Audio) only after a tap: this one
    if ("speechSynthesis" in window) window.speechSynthesis.speak(new SpeechSynthesisUtterance("Cues on."));
    if (typeof navigator.vibrate === "function") navigator.vibrate(60);
    buildLayer();
    showOwner();
  });

  // ---------------------------------------------------------------- continuous cues: Web Audio, vibration
  // The mapping is dsp/sonify.py's, its numbers sent by serve (docs/cues.md): silent within the dead band; sonify:
  // noise from floor_dbfs to top_dbfs (straight in dB); beep: low_hz up `octaves` octaves; haptic: pulses from
  // slow_s to fast_s apart. window.stackcue.sound is a read-only status for the tests.
  const sound = { style: "spoken", map: null, ctx: null, out: null, gain: null, analyser: null, graph: [],
    deviation: null, target: 0, levelDb: null, beeps: 0, lastHz: null, pulses: 0, period: null, ducked: false, timer: null };
  page.sound = sound;
  page.language = "en";
  function excess(dev) {
    const m = sound.map;
    if (!m || typeof dev !== "number" || !isFinite(dev)) return null;
    const d = Math.abs(dev) - m.dead_band_deg;
    return d <= 0 ? null : Math.min(d / (m.full_scale_deg - m.dead_band_deg), 1);
  }
  function noiseBuffer(ctx) { // dsp/sonify.py's noise: white through a one-pole low-pass (0.85), unit RMS
    const n = ctx.sampleRate * 2, buf = ctx.createBuffer(1, n, ctx.sampleRate), d = buf.getChannelData(0);
    let y = 0, sum = 0;
    for (let i = 0; i < n; i++) {
      const u = Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
      y = 0.15 * u + 0.85 * y; d[i] = y; sum += y * y;
    }
    const k = 1 / Math.sqrt(sum / n);
    for (let i = 0; i < n; i++) d[i] *= k;
    return buf;
  }
  function teardown() {
    for (const node of sound.graph) { try { if (node.stop) node.stop(); node.disconnect(); } catch (e) { /* already gone */ } }
    sound.graph = []; sound.gain = null;
    clearTimeout(sound.timer); sound.timer = null; sound.period = null;
  }
  function buildLayer() {
    teardown();
    if (page.owner !== "phone" || !page.cuesOn || !sound.map) return;
    if (sound.style === "sonify" || sound.style === "beep") {
      const AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) return;
      if (!sound.ctx) sound.ctx = new AC();
      const ctx = sound.ctx;
      if (ctx.state === "suspended") ctx.resume();
      sound.out = ctx.createGain(); // the duck: 1, or duck_db down while a cue is spoken
      sound.analyser = ctx.createAnalyser(); sound.analyser.fftSize = 4096;
      sound.out.connect(sound.analyser); sound.analyser.connect(ctx.destination);
      sound.graph = [sound.out, sound.analyser];
      if (sound.style === "sonify") {
        const src = ctx.createBufferSource(); src.buffer = noiseBuffer(ctx); src.loop = true;
        sound.gain = ctx.createGain(); sound.gain.gain.value = 0;
        src.connect(sound.gain); sound.gain.connect(sound.out); src.start();
        sound.graph.unshift(src, sound.gain);
      }
    }
    setDeviation(sound.deviation);
  }
  function setDeviation(dev) {
    sound.deviation = dev;
    const m = sound.map, x = excess(dev);
    if (!m) return;
    if (sound.style === "sonify" && sound.gain) {
      sound.levelDb = x === null ? null : m.floor_dbfs + x * (m.top_dbfs - m.floor_dbfs);
      sound.target = x === null ? 0 : Math.pow(10, sound.levelDb / 20);
      sound.gain.gain.setTargetAtTime(sound.target, sound.ctx.currentTime, 0.01); // ~30 ms: no click
    } else if (sound.style === "beep" && sound.out && x !== null) {
      const ctx = sound.ctx, t = ctx.currentTime + 0.005, hz = m.low_hz * Math.pow(2, x * m.octaves);
      const osc = ctx.createOscillator(), env = ctx.createGain(), amp = Math.SQRT2 * Math.pow(10, m.beep_dbfs / 20);
      osc.frequency.value = hz;
      env.gain.setValueAtTime(0, t);
      env.gain.linearRampToValueAtTime(amp, t + 0.01);
      env.gain.setValueAtTime(amp, t + m.beep_s - 0.01);
      env.gain.linearRampToValueAtTime(0, t + m.beep_s);
      osc.connect(env); env.connect(sound.out);
      osc.start(t); osc.stop(t + m.beep_s + 0.02);
      osc.onended = () => env.disconnect();
      sound.beeps += 1; sound.lastHz = hz;
    } else if (sound.style === "haptic") {
      sound.period = x === null ? null : m.slow_s - x * (m.slow_s - m.fast_s);
      if (sound.period !== null && sound.timer === null) pulse();
    }
  }
  function pulse() { // one pulse, then the next after the period in force then
    sound.timer = null;
    if (sound.period === null || sound.ducked) return;
    if (typeof navigator.vibrate === "function") navigator.vibrate(Math.round(sound.map.pulse_on_s * 1000));
    sound.pulses += 1;
    sound.timer = setTimeout(pulse, sound.period * 1000);
  }
  function duck(on) {
    sound.ducked = on;
    if (sound.out && sound.ctx) sound.out.gain.setTargetAtTime(on ? Math.pow(10, sound.map.duck_db / 20) : 1, sound.ctx.currentTime, 0.01);
    if (!on && sound.style === "haptic" && sound.period !== null && sound.timer === null) pulse();
  }
  sound.levelNow = () => { // what the analyser hears now, dBFS RMS (tests)
    if (!sound.analyser) return null;
    const a = new Float32Array(sound.analyser.fftSize);
    sound.analyser.getFloatTimeDomainData(a);
    let s = 0;
    for (const v of a) s += v * v;
    return 10 * Math.log10(s / a.length + 1e-20);
  };
  let holdTimer = null;
  function onProvisional(p) {
    if (page.owner !== "phone" || !page.cuesOn || sound.style === "spoken") return;
    setDeviation(p.deviation);
    clearTimeout(holdTimer); // no stride for 2.5 s (a stop, a pause, the end): silent, as on the Pi
    holdTimer = setTimeout(() => setDeviation(null), 2500);
  }

  // ---------------------------------------------------------------- commands
  async function send(cmd, minutes) {
    const body = { cmd };
    if (minutes !== undefined) body.minutes = minutes;
    $("ack").textContent = "sending " + cmd + "…";
    try {
      const r = await fetch("/api/command", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(body), credentials: "same-origin" });
      const j = await r.json().catch(() => ({}));
      if (r.status === 202) { page.pending = { id: j.id, cmd }; $("ack").textContent = cmd + " sent…"; showAck(); }
      else if (r.status === 401) location.href = "/login";
      else $("ack").textContent = "✗ " + cmd + ": " + (j.error || r.status);
    } catch (err) {
      $("ack").textContent = "✗ " + cmd + ": the Pi did not answer";
    }
  }
  for (const b of document.querySelectorAll(".controls .btn")) {
    b.addEventListener("click", () => {
      const cmd = b.dataset.cmd;
      if (cmd === "stop" && Date.now() - page.stopArmed > 3000) { // a second tap within 3 s: no stop by a brush
        page.stopArmed = Date.now();
        b.textContent = "Tap again to stop"; b.classList.add("armed");
        setTimeout(() => { b.textContent = "Stop"; b.classList.remove("armed"); }, 3000);
        return;
      }
      if (cmd === "stop") { page.stopArmed = 0; b.textContent = "Stop"; b.classList.remove("armed"); }
      send(cmd, cmd === "mute" ? Number(b.dataset.minutes || MUTE_MIN) : undefined);
    });
  }

  showOwner();
  showConn();
  draw();
  connect();
})();
