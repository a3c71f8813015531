// Live updates for the dtrcache console. Every page works without this
// file: the tag template preview has its Preview button, a job page its
// reload. Served from the origin itself (Content-Security-Policy:
// script-src 'self'); no inline script anywhere.
(function () {
  "use strict";

  // The tag template preview, as the template or the tag is typed.
  var tmpl = document.querySelector("[data-preview-template]");
  var tag = document.querySelector("[data-preview-tag]");
  var out = document.querySelector("[data-preview-output]");
  if (tmpl && tag && out) {
    var timer = null;
    var update = function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var q = new URLSearchParams({ template: tmpl.value, tag: tag.value });
        fetch("/console/policies/preview?" + q.toString(), { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (j) {
            out.textContent = j.error ? j.error : "→ " + j.tag;
            out.classList.toggle("bad", Boolean(j.error));
          })
          .catch(function () {});
      }, 150);
    };
    tmpl.addEventListener("input", update);
    tag.addEventListener("input", update);
  }

  // The rule builder offers the operators of the chosen field only.
  document.querySelectorAll("[data-rule-field]").forEach(function (field) {
    var ops = field.closest("tr").querySelector("[data-rule-operator]");
    var filter = function () {
      var chosen = field.options[field.selectedIndex];
      var allowed = chosen && chosen.dataset.ops ? chosen.dataset.ops.split(" ") : null;
      var first = null;
      Array.prototype.forEach.call(ops.options, function (o) {
        var off = allowed !== null && allowed.indexOf(o.value) < 0;
        o.hidden = off;
        o.disabled = off;
        if (!off && first === null) { first = o; }
      });
      if (ops.selectedIndex < 0 || ops.options[ops.selectedIndex].disabled) {
        if (first) { first.selected = true; }
      }
    };
    field.addEventListener("change", filter);
    filter();
  });

  // A region with data-live="URL" is fetched again every 2 s (the job
  // pages while a job is open) until the server sends it without one.
  var live = function (el) {
    var url = el.dataset.live;
    if (!url) { return; }
    setTimeout(function () {
      fetch(url, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) { return; }
          var t = document.createElement("template");
          t.innerHTML = html;
          var fresh = t.content.querySelector("#" + el.id);
          if (fresh) {
            el.replaceWith(fresh);
            live(fresh);
          }
        })
        .catch(function () {});
    }, 2000);
  };
  document.querySelectorAll("[data-live]").forEach(live);
})();
