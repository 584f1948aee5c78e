/* Besik outbox: reports waiting on the phone, in IndexedDB, shared by the page and the
 * service worker. A report is written here before any attempt to send it, deleted from
 * "pending" only after the server accepted it (2xx), and replayed one at a time.
 *
 * Retries follow Workbox's Background Sync design: the wait before the next attempt
 * (next_attempt_at, 1 s doubling to 5 min) is stored with the report, so every wake-up (the
 * online event, a page load, the worker starting, a sync event) honours it and phones do not
 * all resend the moment a server recovers. Only the nurse's own tap sends at once. Needs
 * api.js loaded first. */
(function (scope) {
  "use strict";

  var api = scope.BesikApi;
  var DB_NAME = "besik";
  var LOCK = "besik-outbox";
  var REPORTS_URL = "/api/v1/reports";
  var RESERVE_TARGET = 5;
  var BACKOFF_BASE_MS = 1000;
  var BACKOFF_CAP_MS = 5 * 60 * 1000;
  var SENT_KEPT_MS = 7 * 24 * 3600 * 1000; // a delivered report's receipt stays a week
  var REF_MARGIN_MS = 24 * 3600 * 1000; // never start a report with a reference about to lapse
  // Answers that a retry cannot change: the report waits for its author (failed).
  var REFUSED = { 422: "invalid", 409: "conflict", 403: "forbidden", 413: "too_large", 415: "unreadable", 400: "unreadable" };
  var channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(LOCK) : null;

  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = function () {
        var db = request.result;
        db.createObjectStore("outbox", { keyPath: "id" });
        db.createObjectStore("refs", { keyPath: "reference" });
      };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }

  // The transaction's completion, not a request's success, says the data is on disk.
  function store(name, mode, operation) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(name, mode);
        var request = operation(tx.objectStore(name));
        tx.oncomplete = function () { db.close(); resolve(request ? request.result : undefined); };
        tx.onerror = tx.onabort = function () { db.close(); reject(tx.error); };
      });
    });
  }

  function all() { return store("outbox", "readonly", function (s) { return s.getAll(); }); }
  function put(item) {
    return store("outbox", "readwrite", function (s) { return s.put(item); }).then(notify);
  }

  function notify() {
    if (channel) channel.postMessage({ type: "changed" });
    if (scope.BesikOutbox.onchange) scope.BesikOutbox.onchange();
  }

  function isUnsent(item) { return item.status === "pending" || item.status === "sending"; }

  function unsent() {
    return all().then(function (items) {
      return items.filter(isUnsent).sort(function (a, b) { return a.saved_at - b.saved_at; });
    });
  }

  // A worker knows it is offline too; then no attempt is made, and none is counted: the
  // online event (or the sync the browser fires then) is the signal to try.
  function isOffline() { return scope.navigator && scope.navigator.onLine === false; }

  // What stays on the phone once the authority has the report: no names, no IINs.
  function slim(item, report) {
    return {
      id: item.id, author_id: item.author_id, status: "sent", saved_at: item.saved_at,
      sent_at: Date.now(), reference: report.reference, received_at: report.received_at,
      acknowledged: acknowledgement(report)
    };
  }

  function acknowledgement(report) {
    var acked = (report.notices || []).filter(function (n) { return n.acknowledged_at; });
    if (!acked.length) return null;
    return { agency: acked[0].agency.name, at: acked[0].acknowledged_at };
  }

  // Receipts older than a week leave the phone; unsent and failed reports never do by age.
  function prune() {
    var limit = Date.now() - SENT_KEPT_MS;
    return all().then(function (items) {
      var old = items.filter(function (i) { return i.status === "sent" && (i.sent_at || i.saved_at) < limit; });
      if (!old.length) return 0;
      return store("outbox", "readwrite", function (s) {
        old.forEach(function (i) { s.delete(i.id); });
        return null;
      }).then(notify).then(function () { return old.length; });
    });
  }

  // The author gives up on a report the server refused. Only a failed one: a report that may
  // still be sent is never deleted (the check and the delete are one transaction).
  function discard(id) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction("outbox", "readwrite");
        var objects = tx.objectStore("outbox");
        var deleted = false;
        var found = objects.get(id);
        found.onsuccess = function () {
          if (found.result && found.result.status === "failed") { objects.delete(id); deleted = true; }
        };
        tx.oncomplete = function () { db.close(); resolve(deleted); };
        tx.onerror = tx.onabort = function () { db.close(); reject(tx.error); };
      });
    }).then(function (deleted) { if (deleted) notify(); return deleted; });
  }

  // A tap sends whatever had not been tried since the tap (once: a sync that raced the tap
  // and failed has used that attempt); anything else waits for its next_attempt_at.
  function isDue(item, now, forcedAt) {
    if (forcedAt && (item.last_attempt_at || 0) < forcedAt) return true;
    return !item.next_attempt_at || item.next_attempt_at <= now;
  }

  function retryLater(item, answer) {
    item.status = "pending";
    if (!answer && isOffline()) return put(item).then(function () { return "stop"; });
    item.attempts = (item.attempts || 0) + 1;
    var delay = Math.min(BACKOFF_BASE_MS * Math.pow(2, item.attempts - 1), BACKOFF_CAP_MS);
    var asked = answer && answer.headers ? parseInt(answer.headers.get("Retry-After") || "", 10) : NaN;
    if (asked > 0) delay = Math.min(Math.max(delay, asked * 1000), BACKOFF_CAP_MS);
    item.next_attempt_at = Date.now() + delay;
    return put(item).then(function () { return "stop"; });
  }

  // Send one report; resolves to "next" (go on with the next one) or "stop" (wait: the
  // network, the server or a sign-in).
  function sendOne(item) {
    item.status = "sending";
    item.reason = null;
    item.last_attempt_at = Date.now();
    return put(item).then(function () {
      return api.request("POST", REPORTS_URL, item.body);
    }).then(function (answer) {
      return settle(item, answer);
    }, function () {
      // No answer: no network, the server unreachable, or a redirect (never a delivery).
      return retryLater(item, null);
    });
  }

  function settle(item, answer) {
    var error = (answer.body && answer.body.error) || {};
    var fields = error.fields || {};
    if (answer.ok) {
      return put(slim(item, answer.body || {})).then(function () { return "next"; });
    }
    if (answer.status === 401) {
      item.status = "pending"; item.reason = "auth";
      return put(item).then(function () { return "stop"; });
    }
    if (answer.status === 422 && fields.reference && Object.keys(fields).length === 1) {
      // The reserved reference lapsed or was used: let the server assign one.
      delete item.body.reference; item.reference = null;
      return sendOne(item);
    }
    // A token refused even after api.js renewed it is the session's trouble, not the report's.
    var refusal = error.code === "csrf_invalid" ? null : REFUSED[answer.status];
    if (refusal) {
      item.status = "failed"; item.reason = refusal; item.fields = answer.status === 422 ? fields : {};
      return put(item).then(function () { return "next"; });
    }
    return retryLater(item, answer); // 5xx, 429 and the like: the server will recover
  }

  function waitForSignIn(items) {
    return Promise.all(items.map(function (i) { i.reason = "auth"; i.status = "pending"; return put(i); }));
  }

  // What a flush leaves: reports still waiting, how many of them wait for a retry (not for
  // someone to sign in) and when the first retry is due.
  function summary(items) {
    var retrying = items.filter(function (i) { return i.reason !== "auth"; });
    var times = retrying.map(function (i) { return i.next_attempt_at || 0; }).filter(Boolean);
    return { unsent: items.length, retry: retrying.length, retry_at: times.length ? Math.min.apply(null, times) : null };
  }

  function flushLocked(forcedAt) {
    return prune().then(unsent).then(function (items) {
      if (!items.length || isOffline()) return items;
      if (!items.some(function (i) { return isDue(i, Date.now(), forcedAt); })) return items;
      // A fresh token before every replay (it lapses after an hour), and whose session it is.
      return api.session({ fresh: true }).then(function (auth) {
        if (!auth) return waitForSignIn(items);
        // Replay strictly in order, one at a time; only the author's own session sends.
        var chain = Promise.resolve("next");
        items.forEach(function (item) {
          chain = chain.then(function (step) {
            if (step === "stop") return "stop";
            if (item.author_id !== auth.user.id) {
              if (item.reason === "auth") return "next";
              item.reason = "auth";
              return put(item).then(function () { return "next"; });
            }
            if (!isDue(item, Date.now(), forcedAt)) return "stop";
            return sendOne(item);
          });
        });
        return chain;
      }, function () {
        return retryLater(items[0], null); // no token: the server or the network failed
      }).then(unsent);
    }).then(summary);
  }

  // flush() honours the stored backoff; flush({force: true}) is for the nurse's tap only.
  // Resolves to summary(); rejects only when the phone's storage fails.
  function flush(options) {
    var forcedAt = options && options.force ? Date.now() : 0;
    var run = function () { return flushLocked(forcedAt); };
    // The page and the worker may both flush at once: one at a time, or a report goes twice.
    if (scope.navigator && navigator.locks) return navigator.locks.request(LOCK, run);
    return run();
  }

  function save(item) {
    item.status = "pending"; item.attempts = 0; item.next_attempt_at = 0; item.last_attempt_at = 0;
    item.saved_at = item.saved_at || Date.now();
    return put(item);
  }

  function refs() { return store("refs", "readonly", function (s) { return s.getAll(); }); }

  function usableRefs(facility) {
    var limit = Date.now() + REF_MARGIN_MS;
    return refs().then(function (list) {
      return list.filter(function (r) { return r.facility === facility && Date.parse(r.expires_at) > limit; });
    });
  }

  function takeReference(facility) {
    return usableRefs(facility).then(function (list) {
      if (!list.length) return null;
      list.sort(function (a, b) { return a.reference < b.reference ? -1 : 1; });
      var chosen = list[0].reference;
      return store("refs", "readwrite", function (s) { return s.delete(chosen); })
        .then(function () { return chosen; });
    });
  }

  function topUpReferences(facility) {
    return usableRefs(facility).then(function (list) {
      if (list.length >= RESERVE_TARGET) return list.length;
      return api.request("POST", "/api/v1/references/reserve", { count: RESERVE_TARGET - list.length })
        .then(function (answer) {
          if (answer.status !== 201) return list.length;
          var data = answer.body;
          return Promise.all(data.references.map(function (reference) {
            return store("refs", "readwrite", function (s) {
              return s.put({ reference: reference, facility: data.facility, expires_at: data.expires_at });
            });
          })).then(function () { return list.length + data.references.length; });
        });
    });
  }

  function depth() {
    return unsent().then(function (items) {
      return { depth: items.length, oldest: items.length ? new Date(items[0].saved_at).toISOString() : null };
    });
  }

  // When the first waiting report is due again (null: nothing waits on a timer).
  function retryAt() {
    return unsent().then(function (items) { return summary(items).retry_at; });
  }

  scope.BesikOutbox = {
    all: all, save: save, put: put, flush: flush, unsent: unsent, depth: depth, discard: discard,
    retryAt: retryAt, takeReference: takeReference, topUpReferences: topUpReferences,
    acknowledgement: acknowledgement, channel: channel, onchange: null
  };
})(self);
