/* Besik outbox: reports waiting on the phone, in IndexedDB, shared by the page and the
 * service worker. A report is written here before any attempt to send it, deleted from
 * "pending" only after the server accepted it (2xx), and replayed one at a time. */
(function (scope) {
  "use strict";

  var DB_NAME = "besik";
  var LOCK = "besik-outbox";
  var RESERVE_TARGET = 5;
  var BACKOFF_BASE_MS = 1000;
  var BACKOFF_CAP_MS = 5 * 60 * 1000;
  var REF_MARGIN_MS = 24 * 3600 * 1000; // never start a report with a reference about to lapse
  var channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(LOCK) : null;
  var retryTimer = null;

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

  // One request per transaction: the transaction's completion, not the request's success,
  // says the data is on disk.
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

  // What stays on the phone once the authority has the report: no names, no IINs.
  function slim(item, report) {
    return {
      id: item.id, author_id: item.author_id, status: "sent", saved_at: item.saved_at,
      reference: report.reference, received_at: report.received_at,
      acknowledged: acknowledgement(report)
    };
  }

  function acknowledgement(report) {
    var acked = (report.notices || []).filter(function (n) { return n.acknowledged_at; });
    if (!acked.length) return null;
    return { agency: acked[0].agency.name, at: acked[0].acknowledged_at };
  }

  function session() {
    return fetch("/api/v1/csrf", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) return null;
        if (!response.ok) throw new Error("csrf " + response.status);
        return response.json();
      });
  }

  function backoff(item) {
    item.attempts = (item.attempts || 0) + 1;
    var delay = Math.min(BACKOFF_BASE_MS * Math.pow(2, item.attempts - 1), BACKOFF_CAP_MS);
    item.next_attempt_at = Date.now() + delay;
    item.status = "pending";
    return delay;
  }

  function schedule(delay) {
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = setTimeout(function () { retryTimer = null; flush(); }, delay);
  }

  function post(item, token) {
    return fetch("/api/v1/reports", {
      method: "POST", credentials: "same-origin", redirect: "error",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token },
      body: JSON.stringify(item.body)
    });
  }

  // Send one report; resolves to "next" (go on), "stop" (wait: network, server, sign-in).
  function sendOne(item, auth, canRefreshToken) {
    item.status = "sending";
    return put(item).then(function () { return post(item, auth.csrf_token); }).then(function (response) {
      if (response.ok) {
        return response.json().then(function (report) { return put(slim(item, report)); })
          .then(function () { return "next"; });
      }
      return response.json().catch(function () { return {}; }).then(function (body) {
        var error = body.error || {};
        var fields = error.fields || {};
        if (response.status === 401) {
          item.status = "pending"; item.reason = "auth";
          return put(item).then(function () { return "stop"; });
        }
        if (response.status === 400 && error.code === "csrf_invalid" && canRefreshToken) {
          return session().then(function (fresh) {
            if (!fresh) { item.status = "pending"; item.reason = "auth"; return put(item).then(function () { return "stop"; }); }
            auth.csrf_token = fresh.csrf_token;
            return sendOne(item, auth, false);
          });
        }
        if (response.status === 422 && fields.reference && Object.keys(fields).length === 1) {
          // The reserved reference lapsed or was used: let the server assign one.
          delete item.body.reference; item.reference = null;
          return sendOne(item, auth, canRefreshToken);
        }
        if (response.status === 422) {
          item.status = "failed"; item.reason = "invalid"; item.fields = fields;
          return put(item).then(function () { return "next"; });
        }
        if (response.status === 409 || response.status === 403 || response.status === 413 ||
            response.status === 415 || response.status === 400) {
          item.status = "failed"; item.reason = response.status === 409 ? "conflict" : "forbidden";
          return put(item).then(function () { return "next"; });
        }
        var delay = backoff(item); // 5xx, 429: the server will recover
        return put(item).then(function () { schedule(delay); return "stop"; });
      });
    }, function () {
      var delay = backoff(item); // no network: the online event or a sync will bring us back
      return put(item).then(function () { schedule(delay); return "stop"; });
    });
  }

  function flushLocked(force) {
    return unsent().then(function (items) {
      if (!items.length) return;
      var now = Date.now();
      var due = items.filter(function (i) { return force || !i.next_attempt_at || i.next_attempt_at <= now; });
      if (!due.length) {
        schedule(Math.max(items[0].next_attempt_at - now, 50));
        return;
      }
      return session().then(function (auth) {
        if (!auth) {
          return Promise.all(items.map(function (i) { i.reason = "auth"; i.status = "pending"; return put(i); }));
        }
        // Replay strictly in order, one at a time; only the author's own session sends.
        var chain = Promise.resolve("next");
        items.forEach(function (item) {
          chain = chain.then(function (step) {
            if (step === "stop") return "stop";
            if (item.author_id !== auth.user.id) {
              // Only its author's session may send a report: it waits for her to sign in.
              if (item.reason === "auth") return "next";
              item.reason = "auth";
              return put(item).then(function () { return "next"; });
            }
            if (!force && item.next_attempt_at && item.next_attempt_at > Date.now()) return "stop";
            item.reason = null;
            return sendOne(item, auth, true);
          });
        });
        return chain;
      }, function () {
        var delay = backoff(items[0]);
        return put(items[0]).then(function () { schedule(delay); });
      });
    });
  }

  function flush(options) {
    var force = !!(options && options.force);
    if (scope.navigator && navigator.locks) {
      return navigator.locks.request(LOCK, function () { return flushLocked(force); });
    }
    return flushLocked(force);
  }

  function save(item) {
    item.status = "pending"; item.attempts = 0; item.next_attempt_at = 0;
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

  function topUpReferences(facility, token) {
    return usableRefs(facility).then(function (list) {
      if (list.length >= RESERVE_TARGET) return list.length;
      return fetch("/api/v1/references/reserve", {
        method: "POST", credentials: "same-origin", redirect: "error",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token },
        body: JSON.stringify({ count: RESERVE_TARGET - list.length })
      }).then(function (response) {
        if (response.status !== 201) return list.length;
        return response.json().then(function (data) {
          return Promise.all(data.references.map(function (reference) {
            return store("refs", "readwrite", function (s) {
              return s.put({ reference: reference, facility: data.facility, expires_at: data.expires_at });
            });
          })).then(function () { return list.length + data.references.length; });
        });
      });
    });
  }

  function depth() {
    return unsent().then(function (items) {
      return { depth: items.length, oldest: items.length ? new Date(items[0].saved_at).toISOString() : null };
    });
  }

  scope.BesikOutbox = {
    all: all, save: save, put: put, flush: flush, unsent: unsent, depth: depth,
    session: session, takeReference: takeReference, topUpReferences: topUpReferences,
    acknowledgement: acknowledgement,
    channel: channel, onchange: null
  };
})(self);
