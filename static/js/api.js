/* Besik's one way to speak to its API, for the pages and the service worker alike (the worker
 * loads this file with importScripts). JSON in, JSON out; every answer resolves to
 * {status, ok, body, headers}; only "no answer at all" rejects. */
(function (scope) {
  "use strict";

  var CSRF_URL = "/api/v1/csrf";
  var SAFE = { GET: true, HEAD: true, OPTIONS: true };
  var current = null; // the promise of this page's (or worker's) {csrf_token, user}

  function read(response) {
    var type = response.headers.get("Content-Type") || "";
    var parsing = type.indexOf("json") >= 0
      ? response.json().catch(function () { return null; })
      : response.text().then(function () { return null; });
    return parsing.then(function (body) {
      return { status: response.status, ok: response.ok, body: body, headers: response.headers };
    });
  }

  function send(method, url, body, token) {
    var headers = { Accept: "application/json" };
    // redirect "error": the API answers 401, never a redirect; one that follows a redirect to
    // the login page would get a 200 and an outbox would drop a report it never sent.
    var init = { method: method, credentials: "same-origin", redirect: "error", headers: headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (token) headers["X-CSRFToken"] = token;
    return fetch(url, init).then(read);
  }

  // {csrf_token, user: {id, name, role}} of the signed-in session, or null when there is none.
  // One token serves every request; `fresh` asks the server again (the outbox does, before a
  // replay, to learn whose session it is).
  function session(options) {
    if (!current || (options && options.fresh)) {
      var asking = send("GET", CSRF_URL).then(function (answer) {
        if (answer.status === 401) return null;
        if (!answer.ok || !answer.body || !answer.body.csrf_token) throw new Error("csrf " + answer.status);
        return answer.body;
      });
      current = asking;
      // Nothing but a real token is remembered: the next request asks again.
      asking.then(function (auth) { if (!auth && current === asking) current = null; },
        function () { if (current === asking) current = null; });
    }
    return current;
  }

  function errorCode(answer) {
    return answer.body && answer.body.error ? answer.body.error.code : null;
  }

  // request("POST", "/api/v1/reports", body) -> {status, ok, body, headers}. Unsafe methods
  // carry the session's CSRF token (options.csrf === false: a call authorised otherwise, such
  // as a notification's acknowledgement token). A token the server no longer takes (it lapses
  // after an hour, or the session changed) is replaced once and the request sent once more.
  function request(method, url, body, options) {
    method = method.toUpperCase();
    if (SAFE[method] || (options && options.csrf === false)) return send(method, url, body);
    return session().then(function (auth) {
      // No session: answer as the server would have, without sending the request.
      if (!auth) return { status: 401, ok: false, body: null, headers: null };
      return send(method, url, body, auth.csrf_token).then(function (answer) {
        if (answer.status !== 400 || errorCode(answer) !== "csrf_invalid") return answer;
        return session({ fresh: true }).then(function (fresh) {
          if (!fresh) return { status: 401, ok: false, body: null, headers: null };
          return send(method, url, body, fresh.csrf_token);
        });
      });
    });
  }

  scope.BesikApi = { request: request, session: session, errorCode: errorCode };
})(self);
