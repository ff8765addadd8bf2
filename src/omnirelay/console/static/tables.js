// Gives every table cell its column's name (data-label), for tables drawn without one (e.g. by a script):
// on a phone, console.css shows each row as a card of "label: value" lines (class "list", added here too).
// Cells that have a label keep it; a table with the attribute data-no-cards is left alone.
(function () {
  "use strict";
  function label(root) {
    root.querySelectorAll("table").forEach(function (table) {
      var names = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.textContent.trim();
      });
      if (!names.length || table.hasAttribute("data-no-cards")) return;  // opt out: stays a table on a phone
      table.classList.add("list");
      table.querySelectorAll("tbody tr").forEach(function (tr) {
        Array.prototype.forEach.call(tr.children, function (cell, i) {
          if (!cell.hasAttribute("data-label") && names[i] !== undefined) cell.setAttribute("data-label", names[i]);
        });
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    label(document);
    new MutationObserver(function () { label(document); }).observe(document.body, { childList: true, subtree: true });
  });
})();
