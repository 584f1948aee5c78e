/* Besik on the nurse's phone: Send report writes to the outbox first, then tries the
 * network; the outbox list says honestly where each report is. Without this script the
 * form still posts to the server. */
(function () {
  "use strict";

  var outbox = window.BesikOutbox;
  var form = document.getElementById("report-form");
  if (!outbox || !form || !window.indexedDB) return;

  var T = JSON.parse(document.getElementById("besik-strings").textContent);
  var me = {
    id: parseInt(form.dataset.userId, 10), name: form.dataset.userName,
    facility: form.dataset.facility,
    deadlineMs: form.dataset.deadlineSeconds ? parseInt(form.dataset.deadlineSeconds, 10) * 1000 : null,
    agency: form.dataset.agencyName, phone: form.dataset.agencyPhone
  };
  var lang = document.documentElement.lang || "en";
  var clock = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: "Asia/Almaty" });
  var HEARTBEAT_MS = 5 * 60 * 1000;

  function fill(text, values) {
    return text.replace(/%\((\w+)\)s/g, function (_, key) { return values[key]; });
  }
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

  // --- the report body: the same field names and rules as the server's form mapping ------
  function almatyIso(local) {
    // <input type=datetime-local> has no zone: the nurse means Kazakhstan time (UTC+5).
    return local ? (local.length === 16 ? local + ":00" : local) + "+05:00" : "";
  }
  function bodyFromForm() {
    var data = new FormData(form);
    var body = { child: {} };
    var text = ["circumstance", "child.sex", "child.iin", "child.condition", "mother.iin",
      "mother.full_name", "mother.birth_date", "mother.citizenship", "mother.phone",
      "mother.address", "notes"];
    function set(name, value) {
      var parts = name.split(".");
      if (parts.length === 2) { body[parts[0]] = body[parts[0]] || {}; body[parts[0]][parts[1]] = value; }
      else body[name] = value;
    }
    text.forEach(function (name) { var v = (data.get(name) || "").trim(); if (v) set(name, v); });
    ["discovered_at", "child.born_at"].forEach(function (name) {
      var v = (data.get(name) || "").trim(); if (v) set(name, almatyIso(v));
    });
    var weight = (data.get("child.weight_g") || "").trim();
    if (weight) set("child.weight_g", /^\d+$/.test(weight) ? parseInt(weight, 10) : weight);
    var flags = data.getAll("risk_flags");
    if (flags.length) body.risk_flags = flags;
    return body;
  }

  function clearErrors() {
    form.querySelectorAll(".error.js").forEach(function (n) { n.remove(); });
    form.querySelectorAll("[aria-invalid]").forEach(function (n) { n.removeAttribute("aria-invalid"); });
  }
  function showError(name, message) {
    var input = form.querySelector('[name="' + name + '"]');
    var anchor = input && input.type === "radio" ? input.closest("fieldset") : input;
    if (!anchor) return;
    var id = name.replace(/\./g, "-") + "-error-js";
    var note = el("p", { class: "error js", id: id }, message);
    anchor.setAttribute("aria-invalid", "true");
    anchor.setAttribute("aria-describedby", id);
    anchor.insertAdjacentElement("afterend", note);
  }
  function missingRequired(body) {
    var missing = [];
    if (!body.circumstance) missing.push("circumstance");
    if (!body.discovered_at) missing.push("discovered_at");
    if (!body.child.sex) missing.push("child.sex");
    return missing;
  }

  function nowLocalInput() {
    var parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Almaty", year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }).formatToParts(new Date());
    var p = {}; parts.forEach(function (x) { p[x.type] = x.value; });
    return p.year + "-" + p.month + "-" + p.day + "T" + (p.hour === "24" ? "00" : p.hour) + ":" + p.minute;
  }

  var editing = null; // the id of a report sent back for correction

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
    var discovered = Date.parse(body.discovered_at);
    var wasEditing = editing;
    // Clear the form at once, so the next report can be typed while this one is saved.
    editing = null;
    form.reset();
    form.querySelector('[name="discovered_at"]').value = nowLocalInput();
    var referencing = wasEditing ? Promise.resolve(null) : outbox.takeReference(me.facility);
    referencing.then(function (reference) {
      if (reference) body.reference = reference;
      return outbox.save({
        id: body.id, body: body, author_id: me.id, author_name: me.name, reference: reference,
        deadline_at: me.deadlineMs ? discovered + me.deadlineMs : null,
        agency: me.agency, phone: me.phone
      });
    }).then(function () {
      return render();
    }, function () {
      // The phone could not store it: give the nurse her report back rather than lose it.
      correct({ id: body.id, body: body, fields: {} });
      showError("circumstance", T.not_saved);
    }).then(function () {
      var row = document.querySelector('[data-outbox-id="' + body.id + '"]');
      if (row) row.focus();
      sync();
    });
  }

  function correct(item) {
    editing = item.id;
    var flat = { circumstance: item.body.circumstance, notes: item.body.notes };
    ["child", "mother"].forEach(function (group) {
      Object.keys(item.body[group] || {}).forEach(function (k) { flat[group + "." + k] = item.body[group][k]; });
    });
    Object.keys(flat).forEach(function (name) {
      var inputs = form.querySelectorAll('[name="' + name + '"]');
      inputs.forEach(function (input) {
        if (input.type === "radio") input.checked = input.value === flat[name];
        else if (/_at$/.test(name) && flat[name]) input.value = String(flat[name]).slice(0, 16);
        else if (flat[name] !== undefined) input.value = flat[name];
      });
    });
    form.querySelector('[name="discovered_at"]').value = item.body.discovered_at.slice(0, 16);
    form.querySelectorAll('[name="risk_flags"]').forEach(function (box) {
      box.checked = (item.body.risk_flags || []).indexOf(box.value) >= 0;
    });
    clearErrors();
    var details = form.querySelector("details");
    Object.keys(item.fields || {}).forEach(function (name) {
      showError(name, item.fields[name]);
      if (details && ["circumstance", "discovered_at", "child.sex"].indexOf(name) < 0) details.open = true;
    });
    form.scrollIntoView();
  }

  // --- what the nurse sees ------------------------------------------------------------
  function describe(item) {
    var lines = [];
    if (item.status === "sent") {
      lines.push([fill(T.delivered, { ref: item.reference, time: clock.format(new Date(item.received_at)) })]);
      if (item.acknowledged) {
        lines.push([fill(T.acknowledged, { agency: item.acknowledged.agency, time: clock.format(new Date(item.acknowledged.at)) })]);
      }
      return lines;
    }
    if (item.status === "failed") {
      var reason = { invalid: T.invalid, conflict: T.conflict }[item.reason] || T.forbidden;
      lines.push([reason, "error"]);
      Object.keys(item.fields || {}).forEach(function (k) { lines.push([k + ": " + item.fields[k], "error"]); });
      return lines;
    }
    lines.push([item.status === "sending" ? T.sending : T.saved, "pending"]);
    lines.push([item.reference ? fill(T.reference, { ref: item.reference }) : T.no_reference]);
    if (item.reason === "auth") {
      lines.push([item.author_id === me.id ? T.session_ended : fill(T.other_author, { name: item.author_name }), "warning"]);
    }
    if (item.deadline_at) {
      var left = item.deadline_at - Date.now();
      lines.push([left >= 0 ? fill(T.deadline_left, { left: span(left) }) : fill(T.deadline_passed, { left: span(-left) }),
        left >= 0 ? "countdown" : "countdown error"]);
    }
    if (item.phone) lines.push([fill(T.fallback, { agency: item.agency, phone: item.phone })]);
    if (item.next_attempt_at && item.next_attempt_at > Date.now() && navigator.onLine) {
      lines.push([fill(T.retry, { time: clock.format(new Date(item.next_attempt_at)) }), "muted"]);
    }
    return lines;
  }

  function render() {
    return outbox.all().then(function (items) {
      var list = document.getElementById("outbox");
      items.sort(function (a, b) { return b.saved_at - a.saved_at; });
      list.textContent = "";
      items.forEach(function (item) {
        var li = el("li", { "data-outbox-id": item.id, "data-outbox-status": item.status, tabindex: "-1" });
        describe(item).forEach(function (line) { li.appendChild(el("p", line[1] ? { class: line[1] } : {}, line[0])); });
        if (item.status === "pending" && item.reason === "auth") {
          li.appendChild(el("a", { class: "button", href: "/login?next=/reports/new" }, T.sign_in));
        }
        if (item.status === "failed" && item.reason === "invalid") {
          var button = el("button", { type: "button", class: "button" }, T.correct);
          button.addEventListener("click", function () { correct(item); });
          li.appendChild(button);
        }
        list.appendChild(li);
      });
      document.getElementById("outbox-section").hidden = items.length === 0;
      var net = document.getElementById("netstate");
      net.hidden = navigator.onLine;
      net.textContent = navigator.onLine ? "" : T.offline;
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
    return fetch("/api/v1/reports?limit=10", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (page) {
        if (!page) return;
        renderRecent(page.items);
        var byId = {};
        page.items.forEach(function (r) { byId[r.id] = r; });
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

  function heartbeat(token) {
    // At most every 5 minutes per phone, across page loads.
    var last = parseInt(localStorage.getItem("besik-heartbeat-at") || "0", 10);
    if (Date.now() - last < HEARTBEAT_MS) return Promise.resolve();
    var device = localStorage.getItem("besik-device");
    if (!device) { device = crypto.randomUUID(); localStorage.setItem("besik-device", device); }
    return outbox.depth().then(function (d) {
      return fetch("/api/v1/devices/heartbeat", {
        method: "POST", credentials: "same-origin", redirect: "error",
        headers: { "Content-Type": "application/json", "X-CSRFToken": token },
        body: JSON.stringify({ device_id: device, outbox_depth: d.depth, oldest_unsent_at: d.oldest })
      }).then(function (response) {
        // Only a heartbeat the server received counts: a page left mid-request sends again.
        if (response.ok) localStorage.setItem("besik-heartbeat-at", String(Date.now()));
      });
    });
  }

  var syncing = null;
  var syncAgain = false;
  function sync() {
    if (navigator.serviceWorker && "SyncManager" in window) {
      navigator.serviceWorker.ready.then(function (reg) { return reg.sync.register("besik-outbox"); }).catch(function () {});
    }
    if (syncing) {
      // A report saved while a sync runs must not wait for the next trigger: go once more.
      syncAgain = true;
      return syncing;
    }
    // A user action, a page load or the network coming back: try now, whatever the backoff.
    syncing = outbox.flush({ force: true }).then(function () {
      return outbox.session();
    }).then(function (auth) {
      if (!auth) return;
      return Promise.all([outbox.topUpReferences(me.facility, auth.csrf_token), heartbeat(auth.csrf_token), refreshRecent()]);
    }).catch(function () { /* offline or server down: the outbox keeps everything */ })
      .then(function () {
        syncing = null;
        if (syncAgain) { syncAgain = false; return sync(); }
        return render();
      });
    return syncing;
  }

  function guardLogout() {
    var logout = document.getElementById("logout-form");
    if (!logout) return;
    logout.addEventListener("submit", function (event) {
      // Unsent reports are never deleted: signing out only asks, and they wait for the author.
      if (logout.dataset.confirmed) return;
      event.preventDefault();
      outbox.unsent().then(function (items) {
        var mine = items.filter(function (i) { return i.author_id === me.id; });
        if (!mine.length || window.confirm(fill(T.logout_confirm, { n: mine.length }))) {
          logout.dataset.confirmed = "1";
          logout.submit();
        }
      });
    });
  }

  outbox.onchange = render;
  if (outbox.channel) outbox.channel.onmessage = render;
  form.addEventListener("submit", onSubmit);
  window.addEventListener("online", sync);
  window.addEventListener("offline", render);
  guardLogout();
  setInterval(render, 30000); // countdowns
  setInterval(function () { if (navigator.onLine) sync(); }, HEARTBEAT_MS);
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
  }
  render().then(sync);
})();
