// Keyhaven dashboard and portal: the only script. No inline handlers anywhere (the
// Content-Security-Policy forbids them); behaviour hangs off data attributes.
"use strict";

// <button data-copy="ID">: copies the text of element #ID.
function copyFrom(button) {
  var target = document.getElementById(button.getAttribute("data-copy"));
  if (!target) return;
  var text = target.textContent.trim();
  var done = function (label) {
    button.textContent = label;
    button.classList.add("copied");
  };
  var selectIt = function () {
    var range = document.createRange();
    range.selectNodeContents(target);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    done("Selected: press Ctrl+C");
  };
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(text).then(function () { done("Copied"); }, selectIt);
  } else {
    selectIt();
  }
}

document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (button) {
    event.preventDefault();
    copyFrom(button);
  }
});
