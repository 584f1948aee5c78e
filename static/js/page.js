/* What Besik's page scripts share: their translated texts, which reach them one way only (the
 * server renders them into <script type="application/json" id="besik-strings">), and
 * Kazakhstan's clock, read from the browser's own time-zone data. */
(function (scope) {
  "use strict";

  var ZONE = "Asia/Almaty";
  var texts = null;

  function strings() {
    if (!texts) {
      var node = document.getElementById("besik-strings");
      texts = node ? JSON.parse(node.textContent) : {};
    }
    return texts;
  }

  // "%(name)s" placeholders, as in the catalogues.
  function fill(text, values) {
    return String(text).replace(/%\((\w+)\)s/g, function (_, key) { return values[key]; });
  }

  function clock(lang) {
    return new Intl.DateTimeFormat(lang || "en", { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: ZONE });
  }

  // A date ("5 December 2026", as the language writes it) on Almaty's calendar.
  function day(lang) {
    return new Intl.DateTimeFormat(lang || "en", { day: "numeric", month: "long", year: "numeric", timeZone: ZONE });
  }

  var wallClock = new Intl.DateTimeFormat("en-US", {
    timeZone: ZONE, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit"
  });

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // The date and time on a wall clock in Almaty at `date`, as numbers.
  function almatyParts(date) {
    var p = {};
    wallClock.formatToParts(date).forEach(function (part) { p[part.type] = part.value; });
    return {
      year: +p.year, month: +p.month, day: +p.day,
      hour: p.hour === "24" ? 0 : +p.hour, minute: +p.minute, second: +p.second
    };
  }

  // Almaty's offset from UTC at that instant, in minutes, from the zone's rules as the browser
  // knows them (+300 since March 2024, +360 before): never a constant, so that the instant a
  // nurse means stays right whatever the browser's zone data says the wall clock was.
  function almatyOffset(date) {
    var p = almatyParts(date);
    var wall = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
    return Math.round((wall - Math.floor(date.getTime() / 1000) * 1000) / 60000);
  }

  // "YYYY-MM-DDTHH:MM" for an <input type=datetime-local>: Almaty's wall clock at `date`.
  function almatyInput(date) {
    var p = almatyParts(date || new Date());
    return p.year + "-" + pad(p.month) + "-" + pad(p.day) + "T" + pad(p.hour) + ":" + pad(p.minute);
  }

  // A datetime-local value (no zone: the nurse means Almaty time) as ISO 8601 with the offset in
  // force at that instant. Anything else is returned as it is, for the server to refuse.
  function almatyIso(local) {
    var m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$/.exec(local || "");
    if (!m) return local;
    var wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
    // First guess with the offset at the wall time read as UTC, then the offset at the instant
    // that guess names (they differ only within hours of a change of the zone's rules).
    var offset = almatyOffset(new Date(wall));
    offset = almatyOffset(new Date(wall - offset * 60000));
    var abs = Math.abs(offset);
    return m[1] + "-" + m[2] + "-" + m[3] + "T" + m[4] + ":" + m[5] + ":" + (m[6] || "00") +
      (offset < 0 ? "-" : "+") + pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
  }

  scope.BesikPage = {
    strings: strings, fill: fill, clock: clock, day: day,
    almatyParts: almatyParts, almatyOffset: almatyOffset, almatyInput: almatyInput, almatyIso: almatyIso
  };
})(window);
