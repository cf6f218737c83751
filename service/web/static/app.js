// zooeval pages: draw the Plotly figures embedded as JSON, and a click on a scatter point opens its model.
(function () {
  function draw() {
    if (typeof Plotly === "undefined") { return; }
    document.querySelectorAll("div.chart[data-figure]").forEach(function (el) {
      var source = document.getElementById(el.dataset.figure);
      if (!source) { return; }
      var fig = JSON.parse(source.textContent);
      Plotly.newPlot(el, fig.data, fig.layout, {responsive: true, displaylogo: false}).then(function () {
        el.setAttribute("data-rendered", "true");
      });
      if (el.dataset.clickOpens === "true") {
        el.on("plotly_click", function (event) {
          var url = event.points && event.points[0] && event.points[0].customdata;
          if (url) { window.location.href = url; }
        });
      }
    });
  }
  function compareButtons() {
    document.querySelectorAll("form[data-compare]").forEach(function (form) {
      var button = form.querySelector("button[type=submit]");
      function update() {
        var n = form.querySelectorAll("input[name=m]:checked").length;
        button.disabled = n < 2;
        button.textContent = "Compare selected (" + n + ")";
      }
      form.addEventListener("change", update);
      update();
    });
  }
  function cleanFilterUrls() {
    // an empty field means "any": leave it out of the URL (it would mean the same, only longer)
    document.querySelectorAll("form.filters").forEach(function (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("input[name], select[name]").forEach(function (field) {
          if (field.value === "") { field.disabled = true; }
        });
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(); compareButtons(); cleanFilterUrls(); });
})();
