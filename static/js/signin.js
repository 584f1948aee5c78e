/* The sign-in page: whoever this phone knew is no longer known. Someone is signing in (or
 * has just signed out), so a report saved from now on takes its author from the server's
 * answer once the new session is confirmed, never from the one before (the phone may still
 * hold a form page cached in that session). Needs api.js and outbox.js loaded first. */
(function () {
  "use strict";

  var outbox = window.BesikOutbox;
  if (!outbox || !window.indexedDB) return;

  function forget() { outbox.forget().catch(function () { /* nothing was known */ }); }

  forget();
  // Again at the submission: a confirmation of the old session made in the meantime (by an
  // open form page) does not count; one asked for before this moment is ignored.
  document.addEventListener("submit", forget, true);
})();
