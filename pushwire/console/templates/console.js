// Pushwire console: copy buttons, and clearing the error area when a new request starts.
// Served from /console/console.js (script-src 'self'); htmx does everything else.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = (source.value !== undefined ? source.value : source.textContent).trim();
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
      done();
    }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    // A new action clears the last error; the live polls (id ending in "-live") do not: someone may be reading it.
    var area = document.getElementById("console-error");
    var id = event.detail.elt ? event.detail.elt.id || "" : "";
    if (area && event.detail.elt && !/-live$/.test(id)) area.innerHTML = "";
  });
})();
