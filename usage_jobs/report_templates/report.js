/* The report's only script, loaded from the site itself (the pages allow no inline script or
   style: see usage-report serve's Content-Security-Policy). It works from the file system too. */
(function () {
  "use strict";

  /* Teams page: filter the table by team name, in the page, without a server round trip. */
  var filter = document.getElementById("team-filter");
  if (filter) {
    filter.addEventListener("input", function () {
      var needle = filter.value.trim().toLowerCase();
      document.querySelectorAll("#teams tbody tr[data-name]").forEach(function (row) {
        row.hidden = needle !== "" && row.dataset.name.toLowerCase().indexOf(needle) === -1;
      });
    });
  }
})();
