/*
 * The cancel page's snippet: it tells the retention collector about the visit.
 *
 * - On load it reads the signed context the company's backend rendered (the page URL's
 *   query when it carries `signature`, else `context.json` beside the page) and POSTs the
 *   landing (`POST /v1/sessions`).
 * - "Cancel subscription" shows the offer and PATCHes `custom.offer_shown` (the offer's
 *   id: validation.md keeps offer_id/offer_type for an accepted offer); "Pause my
 *   subscription" PATCHes the session with `offer_accepted` and the offer's id and type,
 *   "Cancel anyway" with `canceled`, "Never mind" with `deflected`.
 *
 * The browser never holds a secret: the signature was computed by the backend over
 * app_id, billing_system, billing_id and timestamp, and the collector checks it on every
 * request. Each request body is built once and resent unchanged on a retry, so a retry
 * after a lost answer is the same request, which the collector treats as idempotent.
 *
 * No time is sent: the collector stamps `started_at` and `action_at` when it first gets
 * them (a retry keeps the first stamp), so a visitor's wrong clock cannot move the visit
 * in or out of a 30-day episode.
 */
(function () {
  "use strict";

  var RETRIES = 4;
  var SIGNED = ["app_id", "billing_system", "billing_id", "timestamp", "signature"];
  var session = null;
  var context = null;
  var shown = Promise.resolve();

  function $(id) { return document.getElementById(id); }

  function show(state, text) {
    var status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  function newSessionId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.prototype.map.call(bytes, function (b) {
      return b.toString(16).padStart(2, "0");
    }).join("");
  }

  // The context from the page URL (a backend that signs links) or from context.json
  // (a backend that renders it per visit): the same fields either way.
  function loadContext() {
    var query = new URLSearchParams(window.location.search);
    if (query.has("signature")) {
      var fromQuery = {};
      query.forEach(function (value, key) { fromQuery[key] = value; });
      return Promise.resolve(fromQuery);
    }
    return fetch("context.json", { cache: "no-store" }).then(function (response) {
      if (!response.ok) throw new Error("context.json answered " + response.status);
      return response.json();
    });
  }

  function checkContext(given) {
    var missing = SIGNED.concat(["collector"]).filter(function (k) { return !given[k]; });
    if (missing.length) throw new Error("the page context lacks " + missing.join(", "));
    return given;
  }

  // The signed fields every request carries beside the session's own fields.
  function signed(fields) {
    var body = {};
    SIGNED.forEach(function (k) { body[k] = context[k]; });
    Object.keys(fields).forEach(function (k) { body[k] = fields[k]; });
    return body;
  }

  function wait(ms) { return new Promise(function (done) { setTimeout(done, ms); }); }

  // Network errors, 429 and 5xx are retried with backoff; any other 4xx is final and its
  // detail (the collector names the field) is shown.
  function send(method, path, body, attempt) {
    attempt = attempt || 0;
    var url = context.collector.replace(/\/+$/, "") + path;
    var retry = function (why) {
      if (attempt >= RETRIES) throw new Error(why);
      return wait(250 * Math.pow(2, attempt)).then(function () {
        return send(method, path, body, attempt + 1);
      });
    };
    return fetch(url, {
      method: method,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      keepalive: true,
    }).then(function (response) {
      if (response.ok) return response.json().catch(function () { return {}; });
      if (response.status === 429 || response.status >= 500) {
        return retry(method + " " + path + " answered " + response.status);
      }
      return response.text().then(function (text) {
        throw new Error(method + " " + path + " answered " + response.status + ": " + text);
      });
    }, function (error) {
      return retry(method + " " + path + " failed: " + error.message);
    });
  }

  function land() {
    session = {
      session_id: newSessionId(),
      billing_system: context.billing_system,
      billing_id: context.billing_id,
    };
    if (context.page_id) session.page_id = context.page_id;
    if (context.email) session.email = context.email;
    return send("POST", "/v1/sessions", signed(session));
  }

  // Sent while the visitor reads the offer; the outcome waits for it (`shown`), so the
  // collector gets the visit's changes in the order they happened.
  function offerShown() {
    if (!context.offer_id) return;
    var path = "/v1/sessions/" + encodeURIComponent(session.session_id);
    shown = send("PATCH", path, signed({ custom: { offer_shown: context.offer_id } }));
  }

  function act(action, extra) {
    var update = { action: action };
    var reason = $("reason").value;
    if (reason) update.cancel_reason = reason;
    Object.keys(extra || {}).forEach(function (k) { update[k] = extra[k]; });
    var path = "/v1/sessions/" + encodeURIComponent(session.session_id);
    return shown.then(function () { return send("PATCH", path, signed(update)); });
  }

  function finish(promise, doneText) {
    ["accept", "cancel-anyway", "cancel", "stay"].forEach(function (id) { $(id).disabled = true; });
    show("sending", "Saving your choice…");
    return promise.then(
      function () { show("done", doneText); },
      function (error) { show("error", "Something went wrong: " + error.message); }
    );
  }

  function wire() {
    $("cancel").addEventListener("click", function () {
      $("start").hidden = true;
      $("offer").hidden = false;
      show("offer", "");
      offerShown();
    });
    $("stay").addEventListener("click", function () {
      finish(act("deflected"), "Glad you are staying: nothing changed.");
    });
    $("accept").addEventListener("click", function () {
      var offer = { offer_id: context.offer_id, offer_type: context.offer_type };
      finish(act("offer_accepted", offer), "Done: your subscription will be paused.");
    });
    $("cancel-anyway").addEventListener("click", function () {
      finish(act("canceled"), "Done: your subscription will be canceled.");
    });
  }

  function start() {
    wire();
    loadContext()
      .then(function (given) {
        context = checkContext(given);
        if (context.offer_title) $("offer-title").textContent = context.offer_title;
        if (context.offer_text) $("offer-text").textContent = context.offer_text;
        $("accept").hidden = !context.offer_id;
        return land();
      })
      .then(function () {
        $("cancel").disabled = false;
        $("stay").disabled = false;
        show("ready", "");
      }, function (error) {
        show("error", "The page could not start: " + error.message);
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
