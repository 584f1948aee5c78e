/* Besik on the nurse's phone: Send report writes to the outbox first, then tries the
 * network; the outbox list says honestly where each report is. Without this script the
 * form still posts to the server. Needs page.js, api.js and outbox.js loaded first. */
(function () {
  "use strict";

  var page = window.BesikPage;
  var api = window.BesikApi;
  var outbox = window.BesikOutbox;
  var form = document.getElementById("report-form");
  if (!page || !api || !outbox || !form || !window.indexedDB) return;

  var T = page.strings();
  var fill = page.fill;
  // What the page was rendered with: the facility's deadline and agency. Never who files: the
  // service worker may serve this page as it was cached in someone else's session.
  var shell = {
    deadlineMs: form.dataset.deadlineSeconds ? parseInt(form.dataset.deadlineSeconds, 10) * 1000 : null,
    deadlineFrom: form.dataset.deadlineFrom,
    agency: form.dataset.agencyName, phone: form.dataset.agencyPhone
  };
  // Who the server last confirmed on this phone (outbox.identity(), read at each render), or
  // null: nobody since the last sign-out or sign-in.
  var me = null;
  var identifying = {}; // reports saved on this page whose author is being established
  var clock = page.clock(document.documentElement.lang);
  var day = page.day(document.documentElement.lang);
  var HEARTBEAT_MS = 5 * 60 * 1000;
  var TICK_MS = 30 * 1000;
  var CONFIRM_WAIT_MS = 8 * 1000; // how long Send waits for the server to say whose session it is

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }
  function span(ms) {
    var minutes = Math.max(0, Math.round(ms / 60000));
    if (minutes < 60) return fill(T.minutes, { n: minutes });
    return fill(T.hours, { h: Math.floor(minutes / 60), m: minutes % 60 });
  }

  // --- the report body, from the form's own controls -------------------------------------
  // The template is the one list of fields: a name with a dot is a path ("child.sex"),
  // checkboxes of one name make a list, datetime-local is Almaty time, data-integer a whole
  // number. Hidden inputs belong to the plain form post (its CSRF token and id), not to the API.
  function controls() {
    return Array.prototype.filter.call(form.elements, function (input) {
      return input.name && input.type !== "hidden" && input.type !== "submit" && input.type !== "button";
    });
  }
  function getPath(body, name) {
    return name.split(".").reduce(function (node, key) { return node == null ? undefined : node[key]; }, body);
  }
  function setPath(body, name, value) {
    var keys = name.split(".");
    var node = body;
    keys.slice(0, -1).forEach(function (key) { node = node[key] = node[key] || {}; });
    node[keys[keys.length - 1]] = value;
  }
  function bodyFromForm() {
    var body = {};
    controls().forEach(function (input) {
      if (input.type === "checkbox") {
        if (input.checked) setPath(body, input.name, (getPath(body, input.name) || []).concat([input.value]));
        return;
      }
      if (input.type === "radio" && !input.checked) return;
      var value = (input.value || "").trim();
      if (!value) return;
      if (input.type === "datetime-local") value = page.almatyIso(value);
      else if ("integer" in input.dataset && /^\d+$/.test(value)) value = parseInt(value, 10);
      setPath(body, input.name, value); // a non-number stays text: the server names the field
    });
    return body;
  }
  function missingRequired(body) {
    var missing = [];
    controls().forEach(function (input) {
      if (input.required && getPath(body, input.name) === undefined && missing.indexOf(input.name) < 0) {
        missing.push(input.name);
      }
    });
    return missing;
  }
  // The name a person reads for a field: its label, or its group's legend.
  function fieldLabel(name) {
    var input = form.querySelector('[name="' + name + '"]');
    if (!input) return name;
    var group = input.type === "radio" || input.type === "checkbox" ? input.closest("fieldset") : null;
    var legend = group && group.querySelector("legend");
    if (legend) return legend.textContent.trim();
    return input.labels && input.labels.length ? input.labels[0].textContent.trim() : name;
  }

  function clearErrors() {
    form.querySelectorAll(".error.js").forEach(function (n) { n.remove(); });
    form.querySelectorAll("[aria-invalid]").forEach(function (n) { n.removeAttribute("aria-invalid"); });
  }
  function anchorOf(name) {
    var input = form.querySelector('[name="' + name + '"]');
    return input && (input.type === "radio" || input.type === "checkbox") ? input.closest("fieldset") : input;
  }
  function showError(name, message) {
    var anchor = anchorOf(name);
    if (!anchor) return;
    var id = name.replace(/\./g, "-") + "-error-js";
    var note = el("p", { class: "error js", id: id }, message);
    anchor.setAttribute("aria-invalid", "true");
    anchor.setAttribute("aria-describedby", id);
    anchor.insertAdjacentElement("afterend", note);
  }

  // Fields that default to "now" get Almaty's clock now: the page may come from the phone's
  // cache, rendered hours ago. Only an untouched field is changed.
  function defaultNow(always) {
    form.querySelectorAll('[data-default="now"]').forEach(function (input) {
      if (always || input.value === input.defaultValue) input.value = page.almatyInput(new Date());
    });
  }

  var editing = null; // the id of a report sent back for correction

  function noop() {}

  function within(promise, ms) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { reject(new Error("no answer in time")); }, ms);
      promise.then(function (value) { clearTimeout(timer); resolve(value); },
        function (error) { clearTimeout(timer); reject(error); });
    });
  }

  // Who files a report saved online: the server's word on the live session (null: nobody is
  // signed in); without an answer, the user the server last confirmed on this phone (`known`,
  // read at Send). Never the page: a cached copy may have been rendered in a colleague's
  // session. Null: nobody can be named.
  function author(known) {
    return within(outbox.confirmSession(), CONFIRM_WAIT_MS).then(null, function () { return known; });
  }

  function mine(item) { return !!me && item.author_id != null && item.author_id === me.id; }

  function onSubmit(event) {
    event.preventDefault();
    clearErrors();
    var body = bodyFromForm();
    var missing = missingRequired(body);
    if (missing.length) {
      missing.forEach(function (name) { showError(name, T.required); });
      var first = form.querySelector('[aria-invalid="true"]');
      if (first) first.focus();
      return;
    }
    body.id = editing || crypto.randomUUID();
    body.filed_at = new Date().toISOString(); // the phone's clock at Send (PRODUCT §3)
    var started = shell.deadlineFrom ? Date.parse(getPath(body, shell.deadlineFrom)) : NaN;
    var wasEditing = editing;
    // Clear the form at once, so the next report can be typed while this one is saved.
    editing = null;
    form.reset();
    defaultNow(true);
    // Offline, its author is the user the server last confirmed on this phone, known at once
    // (with one of their references). Online, the report is written first with no author, then
    // given the one the server names for the live session (or, without an answer, that user).
    var online = navigator.onLine;
    var known = outbox.identity().catch(function () { return null; });
    var record = {
      id: body.id, body: body, reference: null,
      deadline_at: shell.deadlineMs && !isNaN(started) ? started + shell.deadlineMs : null,
      agency: shell.agency, phone: shell.phone
    };
    if (online) identifying[body.id] = true;
    var saving = online ? outbox.save(record, null) : known.then(function (user) {
      return outbox.save(record, user, !wasEditing);
    });
    saving.then(function () {
      if (!online) return render();
      return author(known).then(function (user) {
        return user ? outbox.assign(body.id, user, !wasEditing) : false;
      }).catch(noop).then(function () {
        delete identifying[body.id];
        return render();
      });
    }, function () {
      delete identifying[body.id];
      // The phone could not store it: give the nurse her report back rather than lose it.
      correct({ id: body.id, body: body, fields: {} });
      var first = controls()[0];
      if (first) showError(first.name, T.not_saved);
    }).then(function () {
      var row = document.querySelector('[data-outbox-id="' + body.id + '"]');
      if (row) row.focus();
      sync(true); // the nurse pressed Send: try now, whatever the backoff
    });
  }

  // Put a report back into the form, from the same controls the body was read from.
  function correct(item) {
    form.reset();
    clearErrors();
    editing = item.id;
    controls().forEach(function (input) {
      var value = getPath(item.body, input.name);
      if (input.type === "checkbox") input.checked = (value || []).indexOf(input.value) >= 0;
      else if (input.type === "radio") input.checked = value === input.value;
      else if (input.type === "datetime-local") input.value = isNaN(Date.parse(value)) ? "" : page.almatyInput(new Date(value));
      else input.value = value === undefined || value === null ? "" : String(value);
    });
    var details = form.querySelector("details");
    Object.keys(item.fields || {}).forEach(function (name) {
      showError(name, item.fields[name]);
      var anchor = anchorOf(name);
      if (details && anchor && details.contains(anchor)) details.open = true;
    });
    form.scrollIntoView();
  }

  function discard(item) {
    if (!mine(item) || !window.confirm(T.discard_confirm)) return;
    outbox.discard(item.id).then(render);
  }

  // --- what the nurse sees ------------------------------------------------------------
  // Each report is one card. Its status lines sit in a polite live region, rewritten only
  // when they change; the countdown and the retry time tick outside it, so a screen reader
  // hears a report being delivered, not the clock every 30 seconds.
  function statusLines(item) {
    var lines = [];
    if (item.status === "sent") {
      lines.push([fill(T.delivered, { ref: item.reference, time: clock.format(new Date(item.received_at)) })]);
      if (item.acknowledged) {
        lines.push([fill(T.acknowledged, { agency: item.acknowledged.agency, time: clock.format(new Date(item.acknowledged.at)) })]);
      }
      return lines;
    }
    if (item.status === "failed") {
      lines.push([T[item.reason] || T.forbidden, "error"]);
      Object.keys(item.fields || {}).forEach(function (k) { lines.push([fieldLabel(k) + ": " + item.fields[k], "error"]); });
      if (!mine(item)) lines.push([fill(T.other_author, { name: item.author_name }), "warning"]);
      var purge = purgeWarning(item);
      if (purge) lines.push([purge, "warning"]);
      return lines;
    }
    lines.push([item.status === "sending" ? T.sending : T.saved, "pending"]);
    lines.push([item.reference ? fill(T.reference, { ref: item.reference }) : T.no_reference]);
    if (item.author_id == null) {
      if (!identifying[item.id]) lines.push([T.no_author, "warning"]);
    } else if (!mine(item)) lines.push([fill(T.other_author, { name: item.author_name }), "warning"]);
    else if (item.reason === "auth") lines.push([T.session_ended, "warning"]);
    return lines;
  }

  function isCorrectable(item) {
    return item.status === "failed" && ["invalid", "too_large", "unreadable"].indexOf(item.reason) >= 0;
  }

  // From its 23rd day, a refused report says when it leaves the phone (on its 30th).
  function purgeWarning(item) {
    if (!outbox.purgeWarned(item, Date.now())) return null;
    var values = { date: day.format(new Date(outbox.purgeAt(item))), agency: item.agency, phone: item.phone };
    if (!item.phone) return fill(T.purge_soon, values);
    return fill(isCorrectable(item) ? T.purge_soon_correct_or_call : T.purge_soon_call, values);
  }

  function isWaitingForRetry(item) {
    return item.status === "pending" && mine(item) && item.reason !== "auth" &&
      item.next_attempt_at > Date.now() && navigator.onLine;
  }

  function tickLines(item) {
    var lines = [];
    if (item.status !== "pending" && item.status !== "sending") return lines;
    if (item.deadline_at) {
      var left = item.deadline_at - Date.now();
      lines.push([left >= 0 ? fill(T.deadline_left, { left: span(left) }) : fill(T.deadline_passed, { left: span(-left) }),
        left >= 0 ? "countdown" : "countdown error"]);
    }
    if (item.phone) lines.push([fill(T.fallback, { agency: item.agency, phone: item.phone })]);
    if (isWaitingForRetry(item)) {
      lines.push([fill(T.retry, { time: clock.format(new Date(item.next_attempt_at)) }), "muted"]);
    }
    return lines;
  }

  function actions(item) {
    var list = [];
    if (item.status === "pending" && item.author_id == null && !identifying[item.id]) list.push("sign_in");
    if (item.status === "pending" && item.reason === "auth" && mine(item)) list.push("sign_in");
    if (isWaitingForRetry(item)) list.push("send_now");
    // A refused report is its author's to correct (it is sent in their name) or to give up.
    if (isCorrectable(item) && mine(item)) list.push("correct");
    if (item.status === "failed" && mine(item)) list.push("discard");
    return list;
  }

  function action(name, li) {
    if (name === "sign_in") return el("a", { class: "button", href: "/login?next=/reports/new" }, T.sign_in);
    var button = el("button", { type: "button", class: "button" }, T[name]);
    button.addEventListener("click", function () {
      // The card keeps the latest copy of its report: the buttons act on that one.
      if (name === "correct" && mine(li.item)) correct(li.item);
      if (name === "discard") discard(li.item);
      if (name === "send_now") sync(true); // the nurse's tap: send now, whatever the backoff
    });
    return button;
  }

  // Replace a container's lines only when their text or class changed.
  function paint(container, lines) {
    var nodes = container.children;
    lines.forEach(function (line, i) {
      var node = nodes[i];
      if (!node) { node = el("p"); container.appendChild(node); }
      if (node.textContent !== line[0]) node.textContent = line[0];
      var cls = line[1] || "";
      if ((node.getAttribute("class") || "") !== cls) {
        if (cls) node.setAttribute("class", cls); else node.removeAttribute("class");
      }
    });
    while (nodes.length > lines.length) container.removeChild(container.lastChild);
  }

  function card(list, item) {
    var li = list.querySelector('[data-outbox-id="' + item.id + '"]');
    if (!li) {
      li = el("li", { "data-outbox-id": item.id, tabindex: "-1" });
      li.appendChild(el("div", { class: "outbox-status", "aria-live": "polite" }));
      li.appendChild(el("div", { class: "outbox-clock" }));
      li.appendChild(el("div", { class: "outbox-actions" }));
    }
    if (li.getAttribute("data-outbox-status") !== item.status) li.setAttribute("data-outbox-status", item.status);
    paint(li.children[0], statusLines(item));
    paint(li.children[1], tickLines(item));
    li.item = item;
    var wanted = actions(item);
    var bar = li.children[2];
    if (bar.dataset.actions !== wanted.join(" ")) {
      bar.dataset.actions = wanted.join(" ");
      bar.textContent = "";
      wanted.forEach(function (name) { bar.appendChild(action(name, li)); bar.appendChild(document.createTextNode(" ")); });
    }
    return li;
  }

  function render() {
    return Promise.all([outbox.all(), outbox.identity().catch(function () { return null; })]).then(function (found) {
      var items = found[0];
      me = found[1];
      var list = document.getElementById("outbox");
      items.sort(function (a, b) { return b.saved_at - a.saved_at; });
      var keep = {};
      items.forEach(function (item, i) {
        keep[item.id] = true;
        var li = card(list, item);
        if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
      });
      Array.prototype.slice.call(list.children).forEach(function (li) {
        if (!keep[li.getAttribute("data-outbox-id")]) list.removeChild(li);
      });
      document.getElementById("outbox-section").hidden = items.length === 0;
      var net = document.getElementById("netstate");
      net.hidden = navigator.onLine;
      var note = navigator.onLine ? "" : T.offline;
      if (net.textContent !== note) net.textContent = note;
    });
  }

  function renderRecent(reports) {
    var list = document.getElementById("recent");
    list.textContent = "";
    reports.forEach(function (report) {
      var li = el("li", { "data-report-id": report.id, "data-state": report.state });
      var link = el("a", { href: "/reports/" + report.id }, report.reference);
      li.appendChild(link);
      li.appendChild(el("span", {}, " — " + (T["state_" + report.state] || report.state)));
      var ack = outbox.acknowledgement(report);
      if (ack) li.appendChild(el("p", {}, fill(T.acknowledged, { agency: ack.agency, time: clock.format(new Date(ack.at)) })));
      list.appendChild(li);
    });
    document.getElementById("recent-section").hidden = reports.length === 0;
  }

  // Reconcile with the server: what it has confirmed, and who acknowledged.
  function refreshRecent() {
    return api.request("GET", "/api/v1/reports?limit=10").then(function (answer) {
      if (!answer.ok || !answer.body) return;
      var reports = answer.body.items;
      renderRecent(reports);
      var byId = {};
      reports.forEach(function (r) { byId[r.id] = r; });
      return outbox.all().then(function (items) {
        return Promise.all(items.filter(function (i) { return i.status === "sent" && byId[i.id]; }).map(function (item) {
          var ack = outbox.acknowledgement(byId[item.id]);
          if (!ack || item.acknowledged) return null;
          item.acknowledged = ack;
          return outbox.put(item);
        }));
      });
    }).catch(function () { /* offline: the outbox list is the truth */ });
  }

  function heartbeat() {
    // At most every 5 minutes per phone, across page loads.
    var last = parseInt(localStorage.getItem("besik-heartbeat-at") || "0", 10);
    if (Date.now() - last < HEARTBEAT_MS) return Promise.resolve();
    var device = localStorage.getItem("besik-device");
    if (!device) { device = crypto.randomUUID(); localStorage.setItem("besik-device", device); }
    return outbox.depth().then(function (d) {
      return api.request("POST", "/api/v1/devices/heartbeat",
        { device_id: device, outbox_depth: d.depth, oldest_unsent_at: d.oldest });
    }).then(function (answer) {
      // Only a heartbeat the server received counts: a page left mid-request sends again.
      if (answer.ok) localStorage.setItem("besik-heartbeat-at", String(Date.now()));
    });
  }

  // While the page is open it wakes itself when the first waiting report is due (the
  // worker cannot: its timers die with it; the browser's sync retries stand in there).
  var retryTimer = null;
  function planRetry() {
    return outbox.retryAt().then(function (at) {
      if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
      if (!at || at <= Date.now() || !navigator.onLine) return;
      retryTimer = setTimeout(function () { retryTimer = null; sync(false); }, at - Date.now() + 50);
    });
  }

  var syncing = null;
  var again = null; // null, or whether the next run was asked for by a tap
  function sync(force) {
    force = force === true;
    if (navigator.serviceWorker && "SyncManager" in window) {
      // Where the browser has Background Sync, it sends even after this page is closed.
      navigator.serviceWorker.ready.then(function (reg) { return reg.sync.register("besik-outbox"); }).catch(function () {});
    }
    if (syncing) {
      // A report saved while a sync runs must not wait for the next trigger: go once more.
      again = again === true || force;
      return syncing;
    }
    // Whose session it is (kept for reports saved offline later), then the outbox.
    var confirming = navigator.onLine ? outbox.confirmSession().catch(noop) : Promise.resolve();
    syncing = confirming.then(function () {
      return outbox.flush({ force: force });
    }).then(function () {
      return api.session();
    }).then(function (auth) {
      if (!auth) return;
      return Promise.all([outbox.topUpReferences(auth.user), heartbeat(), refreshRecent()]);
    }).catch(function () { /* offline or server down: the outbox keeps everything */ })
      .then(function () {
        syncing = null;
        if (again !== null) { var forced = again; again = null; return sync(forced); }
        return Promise.all([render(), planRetry()]);
      });
    return syncing;
  }

  // A page served from the phone's cache carries the CSRF token of the session it was cached
  // in: give its sign-out form the live session's token (when the server answers in time).
  function freshToken(logout) {
    var field = logout.querySelector('input[name="csrf_token"]');
    if (!field || !navigator.onLine) return Promise.resolve();
    return within(api.session({ fresh: true }), CONFIRM_WAIT_MS).then(function (auth) {
      if (auth) field.value = auth.csrf_token;
    }).catch(noop);
  }

  function guardLogout() {
    var logout = document.getElementById("logout-form");
    if (!logout) return;
    logout.addEventListener("submit", function (event) {
      // Unsent reports are never deleted: signing out only asks, and they wait for the author.
      if (logout.dataset.confirmed) return;
      event.preventDefault();
      outbox.unsent().then(function (items) {
        var waiting = items.filter(function (i) { return i.author_id == null || mine(i); });
        if (!waiting.length || window.confirm(fill(T.logout_confirm, { n: waiting.length }))) {
          // Whoever signs in next is not known until the server says so.
          return Promise.all([outbox.forget().catch(noop), freshToken(logout)]).then(function () {
            logout.dataset.confirmed = "1";
            logout.submit();
          });
        }
      });
    });
  }

  function changed() { render(); planRetry(); }

  outbox.onchange = render;
  if (outbox.channel) outbox.channel.onmessage = changed; // the worker sent or backed off
  form.addEventListener("submit", onSubmit);
  // Wake-ups, not taps: each honours the backoff stored with the reports.
  window.addEventListener("online", function () { sync(false); });
  window.addEventListener("offline", render);
  guardLogout();
  defaultNow(false);
  setInterval(render, TICK_MS); // countdowns
  setInterval(function () { if (navigator.onLine) sync(false); }, HEARTBEAT_MS);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
  }
  render().then(function () { return sync(false); });
})();
