/* Besik service worker (served at /sw.js; the server fills in the version and the shell).
 * Navigations: network first, the cached shell when offline. Static files: cache first.
 * Never cached: anything but GET, the API, report pages (personal data). */
"use strict";
importScripts("/static/js/api.js", "/static/js/outbox.js");

var VERSION = "__VERSION__";
var CACHE = "besik-shell-" + VERSION;
var SHELL = __SHELL__;
var SHELL_PAGES = ["/reports/new", "/offline"];

function precache() {
  return caches.open(CACHE).then(function (cache) {
    return Promise.all(SHELL.map(function (url) {
      return fetch(url, { credentials: "same-origin", cache: "no-cache" }).then(function (response) {
        // A redirect here means "not signed in": cache no login page under the form's name.
        if (response.ok && !response.redirected) return cache.put(url, response);
      });
    }));
  });
}

self.addEventListener("install", function (event) {
  event.waitUntil(precache().then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (n) { return n.indexOf("besik-") === 0 && n !== CACHE; })
      .map(function (n) { return caches.delete(n); }));
  }).then(function () { return self.clients.claim(); }).then(flushQuietly));
});

function fromNetworkFirst(request, path) {
  var isShell = SHELL_PAGES.indexOf(path) >= 0;
  return fetch(request).then(function (response) {
    if (isShell && response.ok && !response.redirected) {
      var copy = response.clone();
      caches.open(CACHE).then(function (cache) { return cache.put(path, copy); });
    }
    return response;
  }, function () {
    return caches.match(isShell ? path : "/offline", { cacheName: CACHE }).then(function (hit) {
      return hit || caches.match("/offline", { cacheName: CACHE });
    });
  });
}

function fromCacheFirst(request) {
  return caches.match(request, { cacheName: CACHE }).then(function (hit) {
    return hit || fetch(request);
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") return;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.indexOf("/api/") === 0) return;
  if (request.mode === "navigate") {
    event.respondWith(fromNetworkFirst(request, url.pathname));
  } else if (url.pathname.indexOf("/static/") === 0 || url.pathname === "/manifest.webmanifest") {
    event.respondWith(fromCacheFirst(request));
  }
});

// Wake-ups other than the nurse's tap honour the backoff stored with each report.
function flushQuietly() {
  return self.BesikOutbox.flush().catch(function () {});
}

self.addEventListener("sync", function (event) {
  if (event.tag !== "besik-outbox") return;
  // As Workbox does: a replay that leaves a report to retry rejects, and the browser schedules
  // the sync again (a timer set here would die with the idle worker).
  event.waitUntil(self.BesikOutbox.flush().then(function (result) {
    if (result.retry) throw new Error(result.retry + " report(s) wait for a retry");
  }));
});

// --- alerts for officers ----------------------------------------------------------------

self.addEventListener("push", function (event) {
  var data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  event.waitUntil(showAlert(data));
});

function label(data, key, fallback) {
  return (data.labels && data.labels[key]) || fallback;
}

function showAlert(data) {
  var actions = [];
  if (data.ack_token) actions.push({ action: "acknowledge", title: label(data, "acknowledge", "Acknowledge") });
  actions.push({ action: "open", title: label(data, "open", "Open") });
  return self.registration.showNotification(data.title || "Besik", {
    body: data.body || "",
    tag: data.notice_id || "besik", // a newer message about the same notice replaces it
    renotify: true,
    requireInteraction: !!data.ack_token,
    icon: "/static/icons/icon-192.png",
    data: data,
    actions: actions
  });
}

function supportsActions() {
  return typeof Notification !== "undefined" && "maxActions" in Notification && Notification.maxActions > 0;
}

// The whole click logic in one function, which the notificationclick handler calls (a test
// calls it in the running worker through the DevTools protocol: a headless browser cannot
// click a notification).
function handleClick(action, data) {
  if (action === "acknowledge" && data.ack_token) {
    return acknowledge(data).then(function (ok) {
      if (ok) {
        // Replace the alert with a quiet confirmation (if notifications are still allowed).
        return self.registration.showNotification(data.reference || "Besik", {
          body: label(data, "acknowledged", "Acknowledged"), tag: data.notice_id, silent: true, data: {}
        }).catch(function () {}).then(function () { return { acknowledged: true }; });
      }
      return openWindow("/ack/" + data.notice_id + "?t=" + encodeURIComponent(data.ack_token))
        .then(function () { return { acknowledged: false }; });
    });
  }
  if (!action && data.ack_token && !supportsActions()) {
    // Safari and Firefox show no buttons: the tap opens the one-tap acknowledgement page.
    return openWindow("/ack/" + data.notice_id + "?t=" + encodeURIComponent(data.ack_token))
      .then(function () { return { opened: "ack" }; });
  }
  return openWindow(data.url || "/inbox").then(function () { return { opened: "report" }; });
}

function acknowledge(data) {
  // The token authorises this request (the officer's session may have ended): no CSRF token.
  return self.BesikApi.request("POST", "/api/v1/notices/" + encodeURIComponent(data.notice_id) + "/ack",
    { token: data.ack_token }, { csrf: false })
    .then(function (answer) { return answer.ok; }, function () { return false; });
}

function openWindow(url) {
  var target = new URL(url, self.location.origin).href;
  return self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
    // Focus an open Besik window first, rather than opening another.
    function focus(client) {
      // focus() needs the tap's user activation; without it, the window is still right.
      return client && "focus" in client ? client.focus().catch(function () { return client; }) : client;
    }
    for (var i = 0; i < windows.length; i++) {
      if (windows[i].url === target) return focus(windows[i]);
    }
    if (windows.length && "navigate" in windows[0]) {
      return windows[0].navigate(target).then(focus);
    }
    return self.clients.openWindow(target);
  }).catch(function () { return null; });
}

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  event.waitUntil(handleClick(event.action, event.notification.data || {}));
});

self.addEventListener("pushsubscriptionchange", function (event) {
  event.waitUntil(resubscribe());
});

function resubscribe() {
  return self.BesikApi.request("GET", "/api/v1/push/vapid-public-key").then(function (answer) {
    // 503 push_unavailable: this server cannot push (yet); there is nothing to renew.
    if (!answer.ok || !answer.body || !answer.body.publicKey) return null;
    return self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: answer.body.publicKey })
      .then(function (subscription) {
        return self.BesikApi.request("POST", "/api/v1/push/subscriptions", subscription.toJSON());
      });
  });
}

// A worker that starts (for any event) first tries to deliver what is waiting.
flushQuietly();
