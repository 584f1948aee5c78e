/* The officer's inbox: turn on notifications for this device (on a tap: browsers ask for
 * permission only on a user gesture), see each device's last delivery, send a test, and
 * count down to each acknowledgement deadline. Without this script the inbox still works. */
(function () {
  "use strict";

  var box = document.getElementById("notify");
  if (!box) return;
  var enable = document.getElementById("notify-enable");
  var test = document.getElementById("notify-test");
  var state = document.getElementById("notify-state");
  var lang = document.documentElement.lang || "en";
  var clock = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: "Asia/Almaty" });

  function csrf() {
    return fetch("/api/v1/csrf", { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (data) { return data.csrf_token; });
  }
  function post(url, body, method) {
    return csrf().then(function (token) {
      return fetch(url, {
        method: method || "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": token }, body: JSON.stringify(body || {})
      });
    });
  }

  function showDevices() {
    return fetch("/api/v1/push/subscriptions", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { items: [] }; })
      .then(function (data) {
        var list = document.getElementById("devices");
        list.textContent = "";
        data.items.forEach(function (device) {
          var li = document.createElement("li");
          li.textContent = (device.user_agent || device.endpoint_host) + " — " + (device.last_success_at
            ? box.dataset.last.replace("%(time)s", clock.format(new Date(device.last_success_at)))
            : box.dataset.never);
          list.appendChild(li);
        });
        test.hidden = data.items.length === 0;
      });
  }

  function subscribe() {
    return navigator.serviceWorker.ready.then(function (registration) {
      return fetch("/api/v1/push/vapid-public-key", { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (key) {
          return registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key.publicKey });
        });
    }).then(function (subscription) { return post("/api/v1/push/subscriptions", subscription.toJSON()); })
      .then(function () { state.textContent = box.dataset.on; enable.hidden = true; return showDevices(); });
  }

  function refreshState() {
    if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
      state.textContent = box.dataset.unsupported;
      return;
    }
    if (Notification.permission === "denied") { state.textContent = box.dataset.denied; return; }
    navigator.serviceWorker.ready.then(function (registration) {
      return registration.pushManager.getSubscription();
    }).then(function (existing) {
      enable.hidden = !!existing && Notification.permission === "granted";
      if (!enable.hidden) state.textContent = "";
      else state.textContent = box.dataset.on;
    }).catch(function () { enable.hidden = false; });
    showDevices();
  }

  enable.addEventListener("click", function () {
    Notification.requestPermission().then(function (permission) {
      if (permission === "granted") return subscribe();
      state.textContent = box.dataset.denied;
    }).catch(function () { state.textContent = box.dataset.unsupported; });
  });
  test.addEventListener("click", function () { post("/api/v1/push/test"); });

  function countdowns() {
    document.querySelectorAll("[data-countdown]").forEach(function (node) {
      var left = Date.parse(node.dataset.countdown) - Date.now();
      var minutes = Math.round(Math.abs(left) / 60000);
      node.dataset.left = String(Math.round(left / 1000));
      var span = minutes >= 60
        ? box.dataset.hours.replace("%(h)s", Math.floor(minutes / 60)).replace("%(m)s", minutes % 60)
        : box.dataset.minutes.replace("%(n)s", minutes);
      node.textContent = (left >= 0 ? "⏱ " : "⚠ −") + span + " (" + clock.format(new Date(Date.parse(node.dataset.countdown))) + ")";
    });
  }

  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
  refreshState();
  countdowns();
  setInterval(countdowns, 15000);
})();
