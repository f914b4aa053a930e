// The console's one script (ours, no library): countdowns to the next update, the live
// view's refresh (one request for the panel every few seconds), and the preview beside
// the announcement and update forms. Every page works without it; this only saves reloads.
"use strict";

(function () {
  var lang = document.documentElement.lang === "en" ? "en" : "ja";
  function minutesText(left) {
    if (left >= 0) { return lang === "en" ? "in " + left + " min" : "あと" + left + "分"; }
    return lang === "en" ? (-left) + " min overdue" : (-left) + "分超過";
  }

  function tickCountdowns() {
    var now = Date.now();
    document.querySelectorAll("time[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (isNaN(due)) { return; }
      var left = Math.ceil((due - now) / 60000);
      var text = el.textContent;
      var at = text.indexOf("(");
      el.textContent = (at >= 0 ? text.slice(0, at) : text + " ") + "(" + minutesText(left) + ")";
    });
  }

  function startLive(panel) {
    var url = panel.getAttribute("data-refresh");
    var seconds = Math.max(2, parseInt(panel.getAttribute("data-seconds"), 10) || 3);
    var busy = false;
    function refresh() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) {
          if (r.redirected || r.status === 401 || r.status === 403) { window.location.reload(); }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null) { panel.innerHTML = html; } })
        .catch(function () { /* keep the last panel; try again next tick */ })
        .then(function () { busy = false; });
    }
    setInterval(refresh, seconds * 1000);
  }

  function startPreview(form) {
    var target = document.getElementById(form.getAttribute("data-preview-target"));
    var url = form.getAttribute("data-preview");
    var timer = null;
    function preview() {
      fetch(url, { method: "POST", credentials: "same-origin", body: new FormData(form),
                   headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.text(); })
        .then(function (html) { target.innerHTML = html; })
        .catch(function () {});
    }
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(preview, 400);
    });
    var button = form.querySelector(".js-preview");
    if (button) {
      button.addEventListener("click", function (event) { event.preventDefault(); preview(); });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    tickCountdowns();
    setInterval(tickCountdowns, 15000);
    var panel = document.getElementById("live-panel");
    if (panel) { startLive(panel); }
    document.querySelectorAll("form[data-preview]").forEach(startPreview);
  });
})();
