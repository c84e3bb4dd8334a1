// asynctask dashboard: live refresh of the page's [data-live] part, and actions without reload.
// Served from the package (no CDN); the page's Content-Security-Policy allows this file only.
(function () {
  "use strict";
  var LIVE = { "X-Asynctask-Live": "1" };
  var body = document.body;
  var every = parseInt(body.getAttribute("data-poll"), 10) || 2000;
  var state = document.getElementById("live-state");
  var busy = false;

  function notice(text, failed) {
    var box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text; // text, never markup
    box.hidden = !text;
    box.classList.toggle("warn", !!failed);
  }

  function setState(ok) {
    if (!state) return;
    state.classList.toggle("offline", !ok);
    state.textContent = ok ? "live" : "offline";
  }

  function refresh() {
    var live = document.querySelector("[data-live]");
    if (!live || busy || document.hidden) return Promise.resolve();
    busy = true;
    return fetch(location.href, { headers: LIVE, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok && response.status !== 404) { setState(false); return; }
        if (response.redirected) { location.reload(); return; }
        return response.text().then(function (html) {
          setState(true);
          if (body.hasAttribute("data-error")) { location.reload(); return; }
          // The fragment is rendered and escaped by the server, from the same origin.
          if (live.innerHTML !== html) live.innerHTML = html;
        });
      })
      .catch(function () { setState(false); })
      .then(function () {
        busy = false;
        // Counted so tests (and the curious) can tell a refresh has happened.
        body.setAttribute("data-refreshes", String(1 + (parseInt(body.getAttribute("data-refreshes"), 10) || 0)));
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute || !form.hasAttribute("data-action")) return;
    event.preventDefault();
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) return;
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    // getAttribute: form.action would be the hidden input named "action" (DOM clobbering).
    fetch(form.getAttribute("action"), {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/x-www-form-urlencoded" }, LIVE),
      body: new URLSearchParams(new FormData(form)).toString(),
      credentials: "same-origin"
    })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (type.indexOf("application/json") === 0) {
          return response.json().then(function (answer) {
            notice(answer.message, !response.ok);
            var target = answer.redirect;
            if (target && target.split("?")[0] !== location.pathname) { location.assign(target); return; }
            return refresh();
          });
        }
        return response.text().then(function (text) { notice(text, true); });
      })
      .catch(function (error) { notice("The action did not reach the server: " + error, true); })
      .then(function () { if (button) button.disabled = false; });
  });

  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();
