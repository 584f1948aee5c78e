/* Live countdowns: every [data-countdown="<ISO time>"] shows the time left (or overdue) and
 * the deadline in Almaty time, refreshed every 15 s. Needs page.js; the page carries the
 * texts "minutes" and "hours" in its #besik-strings. */
(function () {
  "use strict";

  var page = window.BesikPage;
  if (!page) return;
  var T = page.strings();
  var clock = page.clock(document.documentElement.lang);

  function render() {
    document.querySelectorAll("[data-countdown]").forEach(function (node) {
      var due = Date.parse(node.dataset.countdown);
      var left = due - Date.now();
      var minutes = Math.round(Math.abs(left) / 60000);
      var span = minutes >= 60
        ? page.fill(T.hours, { h: Math.floor(minutes / 60), m: minutes % 60 })
        : page.fill(T.minutes, { n: minutes });
      node.dataset.left = String(Math.round(left / 1000));
      node.textContent = (left >= 0 ? "⏱ " : "⚠ −") + span + " (" + clock.format(new Date(due)) + ")";
    });
  }

  render();
  setInterval(render, 15000);
})();
