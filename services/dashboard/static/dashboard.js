/* healthwatch dashboard: draw every <canvas data-chart="name"> from the page's JSON
   (<script type="application/json" id="chart-data">), with Chart.js. Tests and the
   console reach a chart with Chart.getChart(canvas) or window.hwCharts[name]. */
(function () {
  "use strict";
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
})();
