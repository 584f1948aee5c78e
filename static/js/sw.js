/* Besik service worker (served at /sw.js; the server fills in the version and the shell).
 * Navigations: network first, the cached shell when offline. Static files: cache first.
 * Never cached: anything but GET, the API, report pages (personal data). */
"use strict";
importScripts("/static/js/outbox.js");

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

function flushQuietly() {
  return self.BesikOutbox.flush({ force: true }).catch(function () {});
}

self.addEventListener("sync", function (event) {
  if (event.tag === "besik-outbox") event.waitUntil(self.BesikOutbox.flush({ force: true }));
});

self.addEventListener("message", function (event) {
  if (event.data && event.data.type === "flush") event.waitUntil(flushQuietly());
});

// A worker that starts (for any event) first tries to deliver what is waiting.
flushQuietly();
