/* Besik outbox: reports waiting on the phone, in IndexedDB, shared by the page and the
 * service worker. A report is written here before any attempt to send it, deleted from
 * "pending" only after the server accepted it (2xx), and replayed one at a time.
 *
 * Retries follow Workbox's Background Sync design: the wait before the next attempt
 * (next_attempt_at, 1 s doubling to 5 min) is stored with the report, so every wake-up (the
 * online event, a page load, the worker starting, a sync event) honours it and phones do not
 * all resend the moment a server recovers. Only the nurse's own tap sends at once.
 *
 * Whose report it is comes from the server, never from the page (the service worker may serve
 * a copy of it rendered for someone else): the identity the server last confirmed is kept
 * here ("identity" store) until a sign-out or a sign-in, and a report saved while nobody's
 * identity is known has no author until the next confirmed session claims it. Needs api.js
 * loaded first. */
(function (scope) {
  "use strict";

  var api = scope.BesikApi;
  var DB_NAME = "besik";
  var DB_VERSION = 2; // 2: the identity store, and references reserved by a user
  var ME = "me"; // the identity store's one key
  var LOCK = "besik-outbox";
  var REPORTS_URL = "/api/v1/reports";
  var RESERVE_TARGET = 5;
  var BACKOFF_BASE_MS = 1000;
  var BACKOFF_CAP_MS = 5 * 60 * 1000;
  var DAY_MS = 24 * 3600 * 1000;
  var SENT_KEPT_MS = 7 * DAY_MS; // a delivered report's receipt stays a week
  var FAILED_KEPT_MS = 30 * DAY_MS; // a refused report (personal data) stays 30 days ...
  var FAILED_WARNED_MS = 23 * DAY_MS; // ... and says so from its 23rd day
  var REF_MARGIN_MS = DAY_MS; // never start a report with a reference about to lapse
  var REPORTER = "reporter"; // the one role that files reports
  // Answers that a retry cannot change: the report waits for its author (failed).
  var REFUSED = { 422: "invalid", 409: "conflict", 403: "forbidden", 413: "too_large", 415: "unreadable", 400: "unreadable" };
  var channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(LOCK) : null;

  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB_NAME, DB_VERSION);
      request.onupgradeneeded = function (event) {
        var db = request.result;
        if (!db.objectStoreNames.contains("outbox")) db.createObjectStore("outbox", { keyPath: "id" });
        if (!db.objectStoreNames.contains("refs")) db.createObjectStore("refs", { keyPath: "reference" });
        // References kept before version 2 name no user: drop them (they lapse on the server).
        else if (event.oldVersion < 2) request.transaction.objectStore("refs").clear();
        if (!db.objectStoreNames.contains("identity")) db.createObjectStore("identity");
      };
      request.onsuccess = function () {
        var db = request.result;
        db.onversionchange = function () { db.close(); }; // a newer page or worker upgrades it
        resolve(db);
      };
      request.onerror = function () { reject(request.error); };
    });
  }

  // One transaction over `names`; `operation(tx)` returns a function that reads its result.
  // The transaction's completion, not a request's success, says the data is on disk.
  function transact(names, mode, operation) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx;
        var outcome;
        try {
          tx = db.transaction(names, mode);
          outcome = operation(tx);
        } catch (error) {
          db.close();
          reject(error);
          return;
        }
        tx.oncomplete = function () { db.close(); resolve(outcome ? outcome() : undefined); };
        tx.onerror = tx.onabort = function () { db.close(); reject(tx.error); };
      });
    });
  }

  function store(name, mode, operation) {
    return transact(name, mode, function (tx) {
      var request = operation(tx.objectStore(name));
      return function () { return request ? request.result : undefined; };
    });
  }

  // Visit every report in one readwrite transaction: `visit(item)` returns "delete", "update"
  // (the item was changed in place) or nothing. Resolves to how many were changed or deleted.
  function rewrite(visit) {
    return transact("outbox", "readwrite", function (tx) {
      var changed = 0;
      tx.objectStore("outbox").openCursor().onsuccess = function (event) {
        var cursor = event.target.result;
        if (!cursor) return;
        var verdict = visit(cursor.value);
        if (verdict === "delete") { cursor.delete(); changed += 1; }
        if (verdict === "update") { cursor.update(cursor.value); changed += 1; }
        cursor.continue();
      };
      return function () { return changed; };
    }).then(function (changed) { if (changed) notify(); return changed; });
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

  // When the server refused a report (older entries: their last attempt).
  function failedAt(item) { return item.failed_at || item.last_attempt_at || item.saved_at; }

  // When a refused report leaves the phone by itself (null: it never does by age) ...
  function purgeAt(item) { return item.status === "failed" ? failedAt(item) + FAILED_KEPT_MS : null; }

  // ... and whether the phone says so yet.
  function purgeWarned(item, now) {
    return item.status === "failed" && (now || Date.now()) >= failedAt(item) + FAILED_WARNED_MS;
  }

  // Receipts leave the phone a week after delivery, refused reports (with their personal data)
  // 30 days after the refusal. A report not yet delivered never leaves it by age. The check
  // and the delete are one transaction: a report corrected meanwhile is pending again, kept.
  function prune() {
    var now = Date.now();
    return rewrite(function (item) {
      if (item.status === "sent" && (item.sent_at || item.saved_at) < now - SENT_KEPT_MS) return "delete";
      if (item.status === "failed" && purgeAt(item) <= now) return "delete";
      return null;
    });
  }

  // The author gives up on a report the server refused. Only a failed one: a report that may
  // still be sent is never deleted (the check and the delete are one transaction).
  function discard(id) {
    return transact("outbox", "readwrite", function (tx) {
      var objects = tx.objectStore("outbox");
      var deleted = false;
      var found = objects.get(id);
      found.onsuccess = function () {
        if (found.result && found.result.status === "failed") { objects.delete(id); deleted = true; }
      };
      return function () { return deleted; };
    }).then(function (deleted) { if (deleted) notify(); return deleted; });
  }

  // --- whose report it is -------------------------------------------------------------

  // The user the server last confirmed for this browser ({id, name, role}), or null: nobody,
  // or somebody signed out or began to sign in since.
  function identity() {
    return store("identity", "readonly", function (s) { return s.get(ME); }).then(function (known) {
      return known && known.id != null ? known : null;
    });
  }

  // The identity record changes in the order of the moments its writers stand for, not in
  // the order their transactions commit (a page that navigates away may commit late): a
  // forget() at `forgotten_at`, an answer of the server asked for at `asked_at`.
  function rewriteIdentity(decide) {
    return transact("identity", "readwrite", function (tx) {
      var objects = tx.objectStore("identity");
      var changed = false;
      var found = objects.get(ME);
      found.onsuccess = function () {
        var known = found.result || {};
        var next = decide(known);
        if (next) { objects.put(next, ME); changed = next.id !== known.id; }
      };
      return function () { return changed; };
    }).then(function (changed) { if (changed) notify(); });
  }

  // Keep the server's answer, unless it was asked for before the last forget(): an answer
  // from the session that a sign-out or a sign-in has just replaced is not the phone's user.
  function remember(user, askedAt) {
    return rewriteIdentity(function (known) {
      if ((known.forgotten_at || 0) >= askedAt || (known.asked_at || 0) > askedAt) return null;
      return { id: user.id, name: user.name, role: user.role, asked_at: askedAt };
    });
  }

  // At a sign-out, and when someone opens the sign-in page: nobody is known any more.
  function forget() {
    var at = Date.now();
    return rewriteIdentity(function (known) {
      if ((known.asked_at || 0) > at || (known.forgotten_at || 0) >= at) return null;
      return { forgotten_at: at };
    });
  }

  // Ask the server whose session this is and keep the answer. Resolves to the user, or null
  // when nobody is signed in (then what was known is kept: a session that lapsed is not a
  // sign-out); rejects when the server did not answer.
  function confirmSession() {
    var askedAt = Date.now();
    return api.session({ fresh: true }).then(function (auth) {
      if (!auth) return null;
      return remember(auth.user, askedAt).then(function () { return auth.user; });
    });
  }

  function canFile(user) { return !!user && user.id != null && user.role === REPORTER; }

  // Make `item` (in memory, within the transaction `tx` over outbox and refs) `user`'s, with a
  // reference reserved in their own session when `withReference` (a reference belongs to a
  // facility: the author's); then `done()`, still within the transaction.
  function sign(tx, item, user, withReference, done) {
    item.author_id = user.id; item.author_name = user.name;
    if (!withReference || item.reference) return done();
    var limit = Date.now() + REF_MARGIN_MS;
    var refs = tx.objectStore("refs");
    var listing = refs.getAll();
    listing.onsuccess = function () {
      var usable = listing.result.filter(function (r) {
        return r.user_id === user.id && Date.parse(r.expires_at) > limit;
      }).sort(function (a, b) { return a.reference < b.reference ? -1 : 1; });
      if (usable.length) {
        item.reference = item.body.reference = usable[0].reference;
        refs.delete(usable[0].reference);
      }
      done();
    };
  }

  // The report saved with no author is `user`'s (see sign()), if it is still unsent and
  // nobody claimed it meanwhile; one transaction. Resolves to true if it was given.
  function assign(id, user, withReference) {
    if (!canFile(user)) return Promise.resolve(false);
    return transact(["outbox", "refs"], "readwrite", function (tx) {
      var objects = tx.objectStore("outbox");
      var given = false;
      var found = objects.get(id);
      found.onsuccess = function () {
        var item = found.result;
        if (!item || !isUnsent(item) || item.author_id != null) return;
        given = true;
        sign(tx, item, user, withReference, function () { objects.put(item); });
      };
      return function () { return given; };
    }).then(function (given) { if (given) notify(); return given; });
  }

  // Reports saved while nobody's identity was known belong to the reporter whose session the
  // server has just confirmed (only unsent ones; one transaction).
  function claim(user) {
    if (!canFile(user)) return Promise.resolve(0);
    return rewrite(function (item) {
      if (!isUnsent(item) || item.author_id != null) return null;
      item.author_id = user.id; item.author_name = user.name; item.reason = null;
      return "update";
    });
  }

  // A tap sends whatever had not been tried since the tap (once: a sync that raced the tap
  // and failed has used that attempt); anything else waits for its next_attempt_at.
  function isDue(item, now, forcedAt) {
    if (forcedAt && (item.last_attempt_at || 0) < forcedAt) return true;
    return !item.next_attempt_at || item.next_attempt_at <= now;
  }

  // Change a stored report that is still unsent, in one transaction: `change(item)` edits the
  // stored copy in place. The copy a flush read earlier may be stale: the page may have given
  // the report its author meanwhile, and writing that copy back would take it away again.
  function patch(id, change) {
    return transact("outbox", "readwrite", function (tx) {
      var objects = tx.objectStore("outbox");
      var found = objects.get(id);
      found.onsuccess = function () {
        var item = found.result;
        if (!item || !isUnsent(item)) return;
        change(item);
        objects.put(item);
      };
      return null;
    }).then(notify);
  }

  function retryLater(item, answer) {
    var offline = !answer && isOffline();
    var asked = answer && answer.headers ? parseInt(answer.headers.get("Retry-After") || "", 10) : NaN;
    return patch(item.id, function (stored) {
      stored.status = "pending";
      if (offline) return; // no attempt was made: nothing to back off from
      stored.attempts = (stored.attempts || 0) + 1;
      var delay = Math.min(BACKOFF_BASE_MS * Math.pow(2, stored.attempts - 1), BACKOFF_CAP_MS);
      if (asked > 0) delay = Math.min(Math.max(delay, asked * 1000), BACKOFF_CAP_MS);
      stored.next_attempt_at = Date.now() + delay;
    }).then(function () { return "stop"; });
  }

  function waitingForSignIn(stored) { stored.reason = "auth"; stored.status = "pending"; }

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
      item.failed_at = Date.now(); // it leaves the phone FAILED_KEPT_MS after this
      return put(item).then(function () { return "next"; });
    }
    return retryLater(item, answer); // 5xx, 429 and the like: the server will recover
  }

  function waitForSignIn(items) {
    return Promise.all(items.map(function (i) { return patch(i.id, waitingForSignIn); }));
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
        // The first confirmed session claims the reports nobody could sign for.
        return claim(auth.user).then(unsent).then(function (current) {
          return replay(current, auth, forcedAt);
        });
      }, function () {
        return retryLater(items[0], null); // no token: the server or the network failed
      }).then(unsent);
    }).then(summary);
  }

  // Replay strictly in order, one at a time; only the author's own session sends.
  function replay(items, auth, forcedAt) {
    var chain = Promise.resolve("next");
    items.forEach(function (item) {
      chain = chain.then(function (step) {
        if (step === "stop") return "stop";
        if (item.author_id !== auth.user.id) {
          if (item.reason === "auth") return "next";
          return patch(item.id, function (stored) {
            if (stored.author_id !== auth.user.id) waitingForSignIn(stored);
          }).then(function () { return "next"; });
        }
        if (!isDue(item, Date.now(), forcedAt)) return "stop";
        return sendOne(item);
      });
    });
    return chain;
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

  // Write a report to wait on the phone: by `user` (see sign()) when they are known, else
  // with no author (assign() or the next confirmed session gives it one).
  function save(item, user, withReference) {
    item.status = "pending"; item.attempts = 0; item.next_attempt_at = 0; item.last_attempt_at = 0;
    item.saved_at = item.saved_at || Date.now();
    item.author_id = null; item.author_name = null;
    return transact(["outbox", "refs"], "readwrite", function (tx) {
      var objects = tx.objectStore("outbox");
      if (canFile(user)) sign(tx, item, user, withReference, function () { objects.put(item); });
      else objects.put(item);
      return null;
    }).then(notify);
  }

  function refs() { return store("refs", "readonly", function (s) { return s.getAll(); }); }

  // References reserved in this user's own session (for their facility).
  function usableRefs(user) {
    var limit = Date.now() + REF_MARGIN_MS;
    return refs().then(function (list) {
      return list.filter(function (r) { return r.user_id === user.id && Date.parse(r.expires_at) > limit; });
    });
  }

  // Keep RESERVE_TARGET references for the signed-in reporter `user`, for reports filed offline.
  function topUpReferences(user) {
    if (!canFile(user)) return Promise.resolve(0);
    return usableRefs(user).then(function (list) {
      if (list.length >= RESERVE_TARGET) return list.length;
      return api.request("POST", "/api/v1/references/reserve", { count: RESERVE_TARGET - list.length })
        .then(function (answer) {
          if (answer.status !== 201) return list.length;
          var data = answer.body;
          return Promise.all(data.references.map(function (reference) {
            return store("refs", "readwrite", function (s) {
              return s.put({ reference: reference, facility: data.facility, user_id: user.id, expires_at: data.expires_at });
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
    retryAt: retryAt, topUpReferences: topUpReferences, acknowledgement: acknowledgement,
    identity: identity, confirmSession: confirmSession, forget: forget, assign: assign,
    purgeAt: purgeAt, purgeWarned: purgeWarned, channel: channel, onchange: null
  };
})(self);
