/* The officer's inbox: turn on notifications for this device (on a tap: browsers ask for
 * permission only on a user gesture), see each device's last delivery and send a test
 * (countdown.js counts down to each deadline). Without this script the inbox still works.
 * Needs page.js and api.js loaded first. */
(function () {
  "use strict";

  var box = document.getElementById("notify");
  var page = window.BesikPage;
  var api = window.BesikApi;
  if (!box || !page || !api) return;
  var T = page.strings();
  var fill = page.fill;
  var enable = document.getElementById("notify-enable");
  var test = document.getElementById("notify-test");
  var state = document.getElementById("notify-state");
  var clock = page.clock(document.documentElement.lang);

  // A failure with the text the officer should see.
  function Shown(text) { this.text = text; }

  function showDevices() {
    return api.request("GET", "/api/v1/push/subscriptions").then(function (answer) {
      var items = answer.ok && answer.body ? answer.body.items : [];
      var list = document.getElementById("devices");
      list.textContent = "";
      items.forEach(function (device) {
        var li = document.createElement("li");
        li.textContent = (device.user_agent || device.endpoint_host) + " — " + (device.last_success_at
          ? fill(T.last, { time: clock.format(new Date(device.last_success_at)) })
          : T.never);
        list.appendChild(li);
      });
      test.hidden = items.length === 0;
    }).catch(function () { /* offline: the list stays as it was */ });
  }

  function subscribe() {
    return navigator.serviceWorker.ready.then(function (registration) {
      return api.request("GET", "/api/v1/push/vapid-public-key").then(function (answer) {
        // 503 push_unavailable: the server has no VAPID key, so no browser could be reached.
        if (api.errorCode(answer) === "push_unavailable") throw new Shown(T.push_unavailable);
        if (!answer.ok || !answer.body || !answer.body.publicKey) throw new Shown(T.failed);
        return registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: answer.body.publicKey });
      });
    }).then(function (subscription) {
      return api.request("POST", "/api/v1/push/subscriptions", subscription.toJSON());
    }).then(function (answer) {
      if (!answer.ok) throw new Shown(T.failed);
      state.textContent = T.on;
      enable.hidden = true;
      return showDevices();
    });
  }

  function refreshState() {
    if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
      state.textContent = T.unsupported;
      return;
    }
    if (Notification.permission === "denied") { state.textContent = T.denied; return; }
    navigator.serviceWorker.ready.then(function (registration) {
      return registration.pushManager.getSubscription();
    }).then(function (existing) {
      enable.hidden = !!existing && Notification.permission === "granted";
      state.textContent = enable.hidden ? T.on : "";
    }).catch(function () { enable.hidden = false; });
    showDevices();
  }

  enable.addEventListener("click", function () {
    Notification.requestPermission().then(function (permission) {
      if (permission !== "granted") { state.textContent = T.denied; return; }
      return subscribe();
    }).catch(function (error) {
      state.textContent = error instanceof Shown ? error.text : T.failed;
    });
  });
  test.addEventListener("click", function () {
    api.request("POST", "/api/v1/push/test").catch(function () {});
  });

  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
  refreshState();
})();
