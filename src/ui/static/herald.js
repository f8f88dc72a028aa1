// Herald's admin pages work without this script; it adds copy buttons, confirmations on
// forms that ask for them, and the queue counts' opt-in refresh.
(function () {
  "use strict";

  document.addEventListener("click", function (e) {
    var button = e.target.closest("[data-copy]");
    if (!button) return;
    var pre = button.parentElement.querySelector("pre");
    if (!pre || !navigator.clipboard) return;
    navigator.clipboard.writeText(pre.textContent).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    });
  });

  document.addEventListener("submit", function (e) {
    var question = e.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  });

  function refresh(box) {
    var target = document.getElementById(box.getAttribute("data-target"));
    if (!target || !box.checked || document.hidden) return;
    var url = target.getAttribute("data-refresh") + window.location.search;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.querySelector("#" + target.id);
        if (fresh) target.replaceWith(fresh);
      })
      .catch(function () {});
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("auto-refresh");
    if (!box) return;
    box.checked = window.localStorage.getItem("herald.refresh") === "on";
    box.addEventListener("change", function () {
      window.localStorage.setItem("herald.refresh", box.checked ? "on" : "off");
      refresh(box);
    });
    setInterval(function () { refresh(box); }, 5000);
  });
})();
