// meshup console: a browser without EventSource cannot stream a live region, so it polls instead
// (the fallback described in meshup/console/live.py). A region rendered to stream is turned, before
// htmx reads it, into one fetch of its fragment URL, which answers a polling region.
(function () {
  "use strict";
  if ("EventSource" in window) {
    return;
  }
  document.addEventListener("htmx:beforeProcessNode", function (event) {
    var region = event.target;
    if (region instanceof Element && region.getAttribute("data-live") === "stream") {
      region.removeAttribute("sse-connect");
      region.setAttribute("hx-trigger", "load");
    }
  });
})();
