// The session page: the report (same origin, in a frame) grows to its full height, so the page scrolls once.
"use strict";
(function () {
  const frame = document.getElementById("report");
  if (!frame) return;
  function fit() {
    try {
      const doc = frame.contentDocument;
      if (doc && doc.documentElement) frame.style.height = (doc.documentElement.scrollHeight + 20) + "px";
    } catch (err) { /* not same-origin: keep the fixed height */ }
  }
  frame.addEventListener("load", () => { fit(); setTimeout(fit, 300); });
})();
