/* healthwatch dashboard: draw every <canvas data-chart="name"> from the page's JSON
   (<script type="application/json" id="chart-data">), with Chart.js. Tests and the
   console reach a chart with Chart.getChart(canvas) or window.hwCharts[name].
   A file input with data-load-into="id" loads the chosen text file into that textarea
   (the admin pages' TOML upload: the text is checked and applied by the form's POST).
   A checkbox with data-pick-all="form id" ticks or unticks every checkbox of that form
   (the alerts list's bulk actions; without script each is ticked by hand). */
(function () {
  "use strict";

  function loadFiles() {
    document.querySelectorAll("input[type=file][data-load-into]").forEach(function (input) {
      input.addEventListener("change", function () {
        var target = document.getElementById(input.getAttribute("data-load-into"));
        var file = input.files && input.files[0];
        if (!target || !file) {
          return;
        }
        file.text().then(function (text) {
          target.value = text;
          target.setAttribute("data-loaded", file.name);
        });
      });
    });
  }

  function drawCharts() {
    var source = document.getElementById("chart-data");
    if (!source || typeof Chart === "undefined") {
      return;
    }
    var configs = JSON.parse(source.textContent || "{}");
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    window.hwCharts = {};
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var name = canvas.getAttribute("data-chart");
      var config = configs[name];
      if (!config) {
        return;
      }
      window.hwCharts[name] = new Chart(canvas, config);
    });
    document.documentElement.setAttribute("data-charts-ready", "true");
  }

  function pickAll() {
    document.querySelectorAll("input[type=checkbox][data-pick-all]").forEach(function (all) {
      all.addEventListener("change", function () {
        var form = all.getAttribute("data-pick-all");
        document.querySelectorAll('input[type=checkbox][form="' + form + '"]').forEach(
          function (box) {
            box.checked = all.checked;
          }
        );
      });
    });
  }

  loadFiles();
  pickAll();
  drawCharts();
})();
