// The squad page, live at the track: Server-Sent Events from /events (the hub relays the coach's broker), each
// runner's row updated in place: running or paused, the last stride's tilt and stack with a sparkline of the last
// strides, and alerts as they happen. Hand-written, no build step, nothing fetched beyond the hub.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const LABEL = { idle: "Idle", calibrating: "Calibrating", running: "Running", paused: "Paused", sensor_lost: "Sensor lost", unknown: "?" };
  const page = { stream: false, broker: false, text: "", seen: {}, states: 0, alerts: 0 };
  window.stackcueSquad = page; // for the tests and a curious coach's console

  function showConn() {
    const up = page.stream && page.broker;
    $("conn").dataset.state = up ? "connected" : "disconnected";
    let text = "live";
    if (!page.stream) text = "connection to the hub lost: reconnecting…";
    else if (!page.broker) text = "the coach's broker is away: reconnecting… (" + page.text + ")";
    $("conntext").textContent = text;
    document.querySelectorAll("td.live").forEach((td) => td.classList.toggle("dim", !up));
  }
  function fmt(v) {
    if (typeof v !== "number" || !isFinite(v)) return "–";
    const s = v.toFixed(1) === "-0.0" ? "0.0" : v.toFixed(1);
    return (v > 0 && s !== "0.0" ? "+" : "") + s + "°";
  }
  function spark(svg, recent) {
    const NS = "http://www.w3.org/2000/svg";
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const vals = recent.flat().filter((v) => typeof v === "number" && isFinite(v));
    if (!vals.length) return;
    const lim = Math.max(4, ...vals.map(Math.abs));
    const y = (v) => 17 - (v / lim) * 15;
    const zero = document.createElementNS(NS, "line");
    zero.setAttribute("x1", 0); zero.setAttribute("x2", 160); zero.setAttribute("y1", 17); zero.setAttribute("y2", 17);
    zero.setAttribute("stroke", "#2d333b");
    svg.appendChild(zero);
    [[0, "#f0883e"], [1, "#6cb6ff"]].forEach(([i, colour]) => {
      const pts = [];
      recent.forEach((r, k) => {
        const v = r[i];
        if (typeof v === "number" && isFinite(v)) pts.push(((k + 0.5) * 160 / Math.max(recent.length, 1)).toFixed(1) + "," + y(v).toFixed(1));
      });
      const line = document.createElementNS(NS, "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("fill", "none"); line.setAttribute("stroke", colour); line.setAttribute("stroke-width", "1.8");
      svg.appendChild(line);
    });
  }
  function onState(st) {
    const td = $("live-" + st.runner);
    if (!td) return;
    const badge = td.querySelector(".badge");
    badge.dataset.state = st.state;
    badge.textContent = LABEL[st.state] || st.state;
    td.querySelector(".angles").textContent = "tilt " + fmt(st.tilt_deg) + " · stack " + fmt(st.stack_deg);
    spark(td.querySelector("svg"), st.recent || []);
    td.dataset.updatedAt = st.updated_at;
    page.seen[st.runner] = { at: Date.now(), updated_at: st.updated_at, state: st.state };
    page.states += 1;
  }
  function onAlert(a) {
    const td = $("live-" + a.runner);
    if (!td) return;
    const when = typeof a.raised_at === "number" ? new Date(a.raised_at * 1000).toLocaleTimeString() : "";
    td.querySelector(".alert").textContent = "⚠ " + a.label + (typeof a.value_deg === "number" ? " " + fmt(a.value_deg) : "") + (when ? " at " + when : "");
    if (!a.old) {
      const row = $("row-" + a.runner);
      row.classList.remove("flash"); void row.offsetWidth; row.classList.add("flash");
      page.alerts += 1;
    }
  }
  window.stackcueEvents("/events", (up) => { page.stream = up; showConn(); }, {
    broker: (m) => { page.broker = !!m.connected; page.text = m.text || ""; showConn(); },
    state: onState,
    alert: onAlert,
  });
})();
