/* Steward energy page: draws the daily (stacked) and by-building (grouped) bar charts from #energy-data.
 *
 * The server sends each chart's categories and series already rounded; the same figures are in the
 * tables and in each chart's CSV link, so nothing here computes a number.
 */
(function () {
  "use strict";

  const dataEl = document.getElementById("energy-data");
  if (!dataEl || !window.echarts) return;
  const page = JSON.parse(dataEl.textContent);
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d"];
  const insts = [];

  function option(spec) {
    const empty = !spec.series.some((s) => s.data.some((v) => v !== null && v !== 0));
    const opt = {
      color: PALETTE,
      animation: false,
      grid: { left: 56, right: 12, top: 40, bottom: 28 },
      legend: { type: "scroll", top: 0, right: 0, left: 48, textStyle: { fontSize: 11 } },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      xAxis: {
        type: "category",
        data: spec.id.startsWith("daily-") ? spec.categories.map((d) => d.slice(5)) : spec.categories,
        axisLabel: { fontSize: 11 },
      },
      yAxis: { type: "value", name: spec.unit, nameTextStyle: { fontSize: 11 }, axisLabel: { fontSize: 11 } },
      series: spec.series.map((s) => ({
        name: s.name,
        type: "bar",
        data: s.data,
        stack: spec.stacked ? "total" : undefined,
        barMaxWidth: 28,
      })),
    };
    if (empty) {
      opt.graphic = {
        type: "text",
        left: "center",
        top: "middle",
        style: { text: page.empty, fill: "#8a94a6", fontSize: 13 },
      };
    }
    return opt;
  }

  for (const spec of page.charts) {
    const dom = document.getElementById(spec.id);
    if (!dom) continue;
    const inst = window.echarts.init(dom, null, { locale: page.lang === "en" ? "EN" : "ZH" });
    inst.setOption(option(spec));
    dom.dataset.ready = "1";
    insts.push(inst);
  }
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => insts.forEach((i) => i.resize()), 150);
  });
})();
