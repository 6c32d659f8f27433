/* The daily summary page: the print button (inline handlers are not allowed by the pages' CSP). */
(function () {
  "use strict";
  const button = document.getElementById("sum-print");
  if (button) button.addEventListener("click", () => window.print());
})();
