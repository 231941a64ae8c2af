// One Server-Sent Events stream for a page, coming back on its own: serve's live page and the hub's squad page.
// stackcueEvents(url, onLink, handlers): onLink(true|false) as the stream opens and drops; handlers: event name ->
// function of its JSON data. A refused stream (logged out) is not retried by the browser: we ask why, and go to
// the login page or try again.
"use strict";
window.stackcueEvents = function (url, onLink, handlers) {
  let es = null;
  function connect() {
    es = new EventSource(url);
    es.onopen = () => onLink(true);
    es.onerror = () => {
      onLink(false);
      if (es.readyState === EventSource.CLOSED) {
        setTimeout(() => fetch(url, { method: "GET", redirect: "manual" })
          .then((r) => { if (r.status === 401) location.href = "/login"; else connect(); }, () => setTimeout(connect, 2000)), 1000);
      }
    };
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (e) => { try { fn(JSON.parse(e.data)); } catch (err) { console.error(err); } });
    }
  }
  connect();
};
