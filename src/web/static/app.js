// grader review UI: keyboard entry of grades (progressive enhancement; every form works
// without this file). In a grade form, a digit key on a focused score select picks that
// level and moves to the next field; Enter on a select moves on without submitting.
(function () {
  "use strict";
  function fields(form) {
    return Array.prototype.slice.call(
      form.querySelectorAll("select, input[type=checkbox], textarea, button[type=submit]")
    );
  }
  function next(form, el) {
    var all = fields(form);
    var i = all.indexOf(el);
    if (i >= 0 && i + 1 < all.length) all[i + 1].focus();
  }
  function wire(form) {
    form.addEventListener("keydown", function (ev) {
      var el = ev.target;
      if (!el || el.tagName !== "SELECT") return;
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (/^[0-9]$/.test(ev.key)) {
        var opt = Array.prototype.find.call(el.options, function (o) { return o.value === ev.key; });
        if (opt) {
          ev.preventDefault();
          el.value = ev.key;
          el.dispatchEvent(new Event("change", { bubbles: true }));
          next(form, el);
        }
      } else if (ev.key === "Enter") {
        ev.preventDefault();
        next(form, el);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    ["blind-grade", "grade-form"].forEach(function (id) {
      var f = document.getElementById(id);
      if (f) wire(f);
    });
  });
})();
