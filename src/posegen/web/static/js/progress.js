// Live progress bars: one EventSource per running generation on the page, authenticated by the
// session cookie (same origin), never by an API key. The server replays from Last-Event-ID, so a
// dropped connection resumes without missing events; a terminal event closes the stream.
(function () {
  "use strict";
  var KINDS = ["queued", "started", "pose", "retrying", "completed", "partial", "failed", "cancelled"];
  var TERMINAL = { completed: 1, partial: 1, failed: 1, cancelled: 1 };
  // Browsers allow six HTTP/1.1 connections per origin; leave room for images and pages.
  var MAX_STREAMS = 4;
  var waiting = [];
  var open = 0;

  function setText(root, role, text) {
    root.querySelectorAll("[data-role='" + role + "']").forEach(function (el) { el.textContent = text; });
  }

  function update(container, data) {
    var done = (data.completed || 0) + (data.failed || 0);
    var total = Math.max(data.total || 0, 1);
    var pct = Math.min(100, Math.round((1000 * done) / total) / 10);
    var bar = container.querySelector("[data-role='bar']");
    if (bar) { bar.value = pct; bar.textContent = pct + " %"; }
    setText(container, "pct", Math.round(pct) + " %");
    var counts = (data.completed || 0) + " done" + (data.failed ? ", " + data.failed + " failed" : "") +
      " of " + (data.total || 0);
    var scope = container.closest("[data-generation], #summary") || container.parentElement;
    setText(scope, "counts", counts);
    if (data.status) {
      var badges = scope.querySelectorAll("[data-role='status']");
      if (container.closest("#summary")) { badges = document.querySelectorAll("h1 [data-role='status']"); }
      badges.forEach(function (el) {
        el.textContent = data.status;
        el.className = "status status-" + data.status;
      });
    }
    container.setAttribute("data-status", data.status || "");
    container.setAttribute("data-percent", String(pct));
  }

  function finished(container, kind) {
    container.removeAttribute("data-live-generation");
    container.setAttribute("data-ended", kind);
    var summary = container.closest("[data-reload-on-end]");
    if (summary) {
      // The gallery is rendered on the server: show the finished images.
      window.setTimeout(function () { window.location.reload(); }, 300);
    }
  }

  // The gallery fills in as poses finish: a pose event (from the same stream) fetches the
  // server-rendered gallery again, at most one fetch in flight and one queued behind it.
  var galleryBusy = false;
  var galleryAgain = false;
  function refreshGallery() {
    var box = document.getElementById("results");
    var url = box && box.getAttribute("data-gallery-url");
    if (!url) { return; }
    if (galleryBusy) { galleryAgain = true; return; }
    galleryBusy = true;
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { box.innerHTML = html; } })
      .catch(function () { /* the next event or the reload at the end catches up */ })
      .then(function () {
        galleryBusy = false;
        if (galleryAgain) { galleryAgain = false; refreshGallery(); }
      });
  }

  function start(container) {
    var id = container.getAttribute("data-live-generation");
    var source = new EventSource("/ui/generations/" + encodeURIComponent(id) + "/events");
    open += 1;
    var closed = false;
    function close() {
      if (closed) { return; }
      closed = true;
      source.close();
      open -= 1;
      next();
    }
    KINDS.forEach(function (kind) {
      source.addEventListener(kind, function (ev) {
        var payload;
        try { payload = JSON.parse(ev.data); } catch (e) { return; }
        update(container, payload.data || {});
        if (kind === "pose" && container.closest("#summary")) { refreshGallery(); }
        if (TERMINAL[kind]) { close(); finished(container, kind); }
      });
    });
    source.addEventListener("error", function () {
      // CLOSED: the server refused (signed out, not found) or said there is nothing left.
      if (source.readyState === EventSource.CLOSED) { close(); }
    });
  }

  function next() {
    while (open < MAX_STREAMS && waiting.length) { start(waiting.shift()); }
  }

  // Export tasks after the end: the generation's stream is reopened by them; follow it from the
  // last event the page was drawn with, refresh the gallery as formats finish, reload at the end.
  var TASK_KINDS = ["task_queued", "task_started", "task_retrying", "task_completed", "task_failed", "tasks_settled"];
  function watchTasks(box) {
    var id = box.getAttribute("data-live-tasks");
    var after = box.getAttribute("data-after") || "0";
    var source = new EventSource("/ui/generations/" + encodeURIComponent(id) + "/events?after=" + encodeURIComponent(after));
    TASK_KINDS.forEach(function (kind) {
      source.addEventListener(kind, function () {
        if (kind === "task_completed" || kind === "task_failed") { refreshGallery(); }
        if (kind === "tasks_settled") { source.close(); window.location.reload(); }
      });
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) { source.close(); }
    });
  }

  document.querySelectorAll("[data-live-generation]").forEach(function (el) { waiting.push(el); });
  next();
  document.querySelectorAll("[data-live-tasks]").forEach(watchTasks);
}());
