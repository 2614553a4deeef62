// casesync console: the only script. It keeps the Sources page's import progress current
// while a backfill runs, from the console's own JSON (no third party, no inline script).
(function () {
  "use strict";
  var cells = document.querySelectorAll("[data-progress-for]");
  if (!cells.length) return;
  var url = document.body.getAttribute("data-base") + "/sources/progress";

  function set(selector, text) {
    var el = document.querySelector(selector);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        // Signed out or the session expired: the page itself goes to sign-in.
        if (r.status === 401) { window.location.reload(); return Promise.reject(r.status); }
        return r.ok ? r.json() : Promise.reject(r.status);
      })
      .then(function (data) {
        var importing = false;
        data.sources.forEach(function (s) {
          set('[data-progress-for="' + CSS.escape(s.id) + '"]', s.progress);
          set('[data-points-for="' + CSS.escape(s.id) + '"]', String(s.data_points));
          set('[data-sync-for="' + CSS.escape(s.id) + '"]', s.last_sync);
          set('[data-error-for="' + CSS.escape(s.id) + '"]', s.last_error);
          importing = importing || s.importing;
        });
        setTimeout(tick, importing ? 1500 : 10000);
      })
      .catch(function () { setTimeout(tick, 10000); });
  }
  setTimeout(tick, 1500);
})();
