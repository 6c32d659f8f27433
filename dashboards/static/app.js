/* Steward dashboards: draws the 24 h charts and applies live updates from the page's SSE stream.
 *
 * The server renders every value already formatted (language, decimals, estate time zone); this script
 * only copies fields into the elements carrying data-point / data-device / data-field, appends new
 * readings to the charts, and swaps whole fragments on the overview and ingest pages.
 */
(function () {
  "use strict";

  const dataEl = document.getElementById("page-data");
  if (!dataEl) return;
  const page = JSON.parse(dataEl.textContent);
  const S = page.strings;
  const statusEl = document.getElementById("live-status");
  const timeEl = document.getElementById("live-time");
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d"];

  function setStatus(state) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.querySelector(".text").textContent = S[state];
  }

  // --- charts ------------------------------------------------------------------------------------

  const charts = {}; // chart id -> {inst, spec}
  const seriesOf = {}; // point id -> {id, index}

  function fixed(decimals) {
    return (v) => (v === null || v === undefined ? "—" : Number(v).toFixed(decimals));
  }

  function chartOption(spec) {
    const multi = spec.series.length > 1;
    const option = {
      // Timestamps arrive as the estate's wall clock read as UTC (see i18n.chart_ms).
      useUTC: true,
      animation: false,
      color: PALETTE,
      grid: { left: 6, right: 14, top: multi ? 30 : 12, bottom: 6, containLabel: true },
      tooltip: { trigger: "axis", confine: true, valueFormatter: fixed(spec.decimals) },
      xAxis: {
        type: "time",
        min: page.x_min, // the whole range, even where a device was silent or not yet installed
        max: page.x_max === null ? undefined : page.x_max, // a custom range ends where it ends
        axisLabel: {
          hideOverlap: true,
          fontSize: 11,
          color: "#5b6576",
          formatter: { year: "{yyyy}", month: "{MM}-{dd}", day: "{MM}-{dd}", hour: "{HH}:{mm}", minute: "{HH}:{mm}" },
        },
        axisLine: { lineStyle: { color: "#c9d1dc" } },
        splitLine: { show: false },
      },
      yAxis: {
        type: "value",
        scale: true,
        axisLabel: { fontSize: 11, color: "#5b6576" },
        splitLine: { lineStyle: { color: "#edf0f4" } },
      },
      series: spec.series.map((s, i) => {
        const out = {
          type: "line",
          name: s.name,
          data: s.data,
          showSymbol: false,
          connectNulls: false,
          lineStyle: { width: 1.6 },
          emphasis: { disabled: true },
        };
        if (i === 0 && spec.lines.length) {
          out.markLine = {
            silent: true,
            symbol: "none",
            lineStyle: { type: "dashed", color: "#b45309", width: 1 },
            label: { formatter: "{b} {c}", position: "insideEndTop", color: "#b45309", fontSize: 10 },
            data: spec.lines.map((l) => ({ name: l.name, yAxis: l.value })),
          };
        }
        return out;
      }),
    };
    if (multi) {
      option.legend = { top: 0, type: "scroll", itemWidth: 14, itemHeight: 8, textStyle: { fontSize: 11 } };
    }
    if (spec.band) addBands(option, spec);
    if (!spec.series.some((s) => s.data.length)) {
      option.graphic = {
        type: "text",
        left: "center",
        top: "middle",
        style: { text: S.empty, fill: "#8a94a6", fontSize: 13 },
      };
    }
    return option;
  }

  // The device page's min–max band (issue 15 §7): rows are [x, avg, min, max]. Each point gets an invisible
  // line at its minimums and, stacked on it, an area as tall as max − min in the point's colour. The band
  // series come after the average lines so live updates (which address series by index) still reach the lines.
  function addBands(option, spec) {
    const f = fixed(spec.decimals);
    const n = spec.series.length;
    spec.series.forEach((s, i) => {
      const color = PALETTE[i % PALETTE.length];
      const common = {
        type: "line",
        stack: "band-" + i,
        showSymbol: false,
        silent: true,
        connectNulls: false,
        lineStyle: { opacity: 0 },
        emphasis: { disabled: true },
      };
      option.series.push({
        ...common,
        name: s.name + " min",
        data: s.data.map((r) => [r[0], r.length > 3 ? r[2] : null]),
      });
      option.series.push({
        ...common,
        name: s.name + " max",
        data: s.data.map((r) => [r[0], r.length > 3 && r[2] !== null ? r[3] - r[2] : null]),
        areaStyle: { color, opacity: 0.16 },
      });
    });
    if (option.legend) option.legend.data = spec.series.map((s) => s.name);
    const esc = window.echarts.format.encodeHTML;
    option.tooltip.formatter = (params) => {
      const rows = params.filter((p) => p.seriesIndex < n);
      if (!rows.length) return "";
      const head = window.echarts.time.format(rows[0].axisValue, "{yyyy}-{MM}-{dd} {HH}:{mm}", true);
      return (
        esc(head) +
        rows
          .map((p) => {
            const r = p.data;
            const range = r.length > 3 && r[2] !== null ? " (" + page.band_label + " " + f(r[2]) + "–" + f(r[3]) + ")" : "";
            return "<br>" + p.marker + esc(p.seriesName) + " <b>" + f(r[1]) + "</b>" + esc(range);
          })
          .join("")
      );
    };
  }

  function initCharts() {
    if (!window.echarts || !page.charts) return;
    for (const spec of page.charts) {
      const dom = document.getElementById(spec.id);
      if (!dom) continue;
      const inst = window.echarts.init(dom, null, { locale: page.lang === "en" ? "EN" : "ZH" });
      inst.setOption(chartOption(spec));
      charts[spec.id] = { inst, spec, empty: !spec.series.some((s) => s.data.length) };
      spec.series.forEach((s, index) => {
        seriesOf[s.point_id] = { id: spec.id, index };
      });
    }
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => Object.values(charts).forEach((c) => c.inst.resize()), 150);
    });
  }

  // --- live updates ------------------------------------------------------------------------------

  function setField(root, name, value) {
    root.querySelectorAll('[data-field="' + name + '"]').forEach((el) => {
      if (el.textContent !== value) el.textContent = value;
    });
  }

  function flash(el) {
    el.classList.remove("flash");
    void el.offsetWidth; // restart the animation
    el.classList.add("flash");
  }

  // Alarm state (issue 15 §1): the element's sev-* class and data-severity, and its badge (alarm_state_view.badge).
  const SEVERITIES = ["sev-ok", "sev-warning", "sev-alarm", "sev-critical"];

  function applyAlarm(node, alarm, field) {
    const sev = alarm ? alarm.severity : "ok";
    if (node.dataset.severity !== sev) {
      node.classList.remove(...SEVERITIES);
      node.classList.add("sev-" + sev);
      node.dataset.severity = sev;
    }
    node.querySelectorAll('[data-field="' + field + '"]').forEach((badge) => {
      badge.hidden = !alarm;
      badge.classList.remove(...SEVERITIES);
      badge.classList.add("sev-" + sev);
      badge.dataset.severity = sev;
      badge.title = alarm ? alarm.oldest || alarm.unacked_text : "";
      const icon = badge.querySelector(".sev-icon");
      if (icon) icon.textContent = alarm ? alarm.icon : "";
      const summary = badge.querySelector(".alarm-summary");
      if (summary) summary.textContent = alarm ? alarm.summary : "";
      const detail = badge.querySelector(".alarm-detail");
      if (detail) detail.textContent = alarm ? alarm.unacked_text + (alarm.oldest ? " · " + alarm.oldest : "") : "";
    });
  }

  function applyValues(data) {
    const dirty = new Set();
    for (const p of data.points) {
      document.querySelectorAll('[data-point="' + p.id + '"]').forEach((node) => {
        if ("alarm" in p) applyAlarm(node, p.alarm, "alarm");
        if ("limit" in p) setField(node, "limit", p.limit);
        const num = node.querySelector('[data-field="text"]');
        if (num) {
          if (num.textContent !== p.text) {
            num.textContent = p.text;
            flash(node);
          }
          const base = num.classList.contains("state-value") ? "state-value" : "num";
          num.className = base + (p.css ? " " + p.css : "");
        }
        setField(node, "ts", p.ts);
        setField(node, "ts_full", p.ts_full);
        setField(node, "stale_text", p.stale_text);
        node.classList.toggle("stale", p.stale);
      });
      const ref = seriesOf[p.id];
      if (page.append && ref && p.x !== null && p.value !== null) {
        const chart = charts[ref.id];
        const arr = chart.spec.series[ref.index].data;
        const last = arr.length ? arr[arr.length - 1][0] : -Infinity;
        if (p.x > last) {
          arr.push([p.x, p.value]);
          const cutoff = p.x - page.span_ms;
          while (arr.length && arr[0][0] < cutoff) arr.shift();
          page.x_min = Math.max(page.x_min || cutoff, cutoff);
          dirty.add(ref.id);
        }
      }
    }
    dirty.forEach((id) => {
      const c = charts[id];
      if (c.empty) {
        c.empty = false;
        c.inst.setOption(chartOption(c.spec), true); // redraw without the "no data" caption
      } else {
        c.inst.setOption({ xAxis: { min: page.x_min }, series: c.spec.series.map((s) => ({ data: s.data })) });
      }
    });
    for (const d of data.devices) {
      document.querySelectorAll('[data-device="' + d.id + '"]').forEach((node) => {
        node.querySelectorAll('[data-field="status_text"]').forEach((el) => {
          el.textContent = d.status_text;
          el.className = "status status-" + d.status;
        });
        setField(node, "last_seen", d.last_seen);
        if ("alarm" in d) applyAlarm(node, d.alarm, "device_alarm");
      });
    }
    applyDiagram(data);
  }

  // --- system diagram (rooms/_diagram.html) ---------------------------------------------------------
  // SVG elements: classList and dataset only (an SVG element's className cannot be assigned).

  const SEVERITY_NAMES = ["ok", "warning", "alarm", "critical"];

  function setSeverity(el, sev) {
    const want = sev || "ok";
    if (el.dataset.severity === want) return;
    SEVERITY_NAMES.forEach((s) => el.classList.toggle("sev-" + s, s === want));
    el.dataset.severity = want;
  }

  function applyDiagram(data) {
    if (!document.querySelector(".diagram")) return;
    const sev = data.severity || { points: {}, devices: {} };
    for (const p of data.points) {
      document.querySelectorAll('[data-point-id="' + p.id + '"]').forEach((el) => {
        const num = el.querySelector('[data-field="text"]');
        if (num && num.textContent !== p.text) num.textContent = p.text;
        el.dataset.state = p.css || "none";
        el.classList.toggle("dg-stale", !!p.stale);
        setSeverity(el, sev.points[p.id]);
      });
    }
    for (const d of data.devices) {
      document.querySelectorAll('[data-device-id="' + d.id + '"]').forEach((el) => {
        el.dataset.status = d.status;
        el.classList.toggle("dg-stale", d.status !== "online");
        setSeverity(el, sev.devices[d.id]);
      });
    }
  }

  function applyHtml(data) {
    const body = document.getElementById("live-body");
    if (body) body.innerHTML = data.html;
    // The wall display keeps its place in the rotation across a swap (see below).
    document.dispatchEvent(new CustomEvent("steward:html-swapped"));
  }

  let source = null;
  let failures = 0;

  function connect() {
    setStatus("connecting");
    source = new EventSource(page.live);
    source.addEventListener("update", (ev) => {
      failures = 0;
      setStatus("connected");
      const data = JSON.parse(ev.data);
      if (page.mode === "html") {
        if (data.html !== undefined) applyHtml(data);
      } else if (data.points) applyValues(data);
      // The alarm banner rides on this stream (static/alarm-banner.js listens).
      if (data.banner) document.dispatchEvent(new CustomEvent("steward:banner", { detail: data.banner }));
      if (timeEl && data.now) timeEl.textContent = S.updated.replace("{time}", data.now);
    });
    source.addEventListener("expired", () => {
      source.close();
      window.location.reload(); // lands on the login page, which brings the user back here
    });
    source.onerror = () => {
      setStatus("lost");
      if (source.readyState === EventSource.CLOSED) {
        // Refused (login ended, server restarting): retry a few times, then reload the page.
        source.close();
        failures += 1;
        if (failures >= 3) window.location.reload();
        else setTimeout(connect, 3000 * failures);
      }
    };
  }

  initCharts();
  if (page.live && window.EventSource) {
    document.documentElement.dataset.liveBanner = "page"; // the banner rides on this stream: it opens none
    connect();
  }
})();

/* SLA countdowns on the ticket board and ticket page: every element with data-due (ms since the epoch)
 * ticks once a second from the browser's clock, corrected by the server's clock at page load
 * (page-data now_ms). Wording matches dashboards/ticket_data.countdown_text; the colour turns amber
 * under 25 % of the clock's window (data-window, seconds) or 5 minutes, red once overdue. Elements
 * are looked up on every tick, so fragments swapped in by the live stream tick too.
 */
(function () {
  "use strict";

  const dataEl = document.getElementById("page-data");
  const page = dataEl ? JSON.parse(dataEl.textContent) : {};
  const en = page.lang === "en";
  const skew = page.now_ms ? page.now_ms - Date.now() : 0;
  const WARN_SHARE = 0.25;
  const WARN_FLOOR_S = 300;

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function span(seconds, fine) {
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (d) return en ? d + " d " + h + " h" : d + " 天 " + h + " 小时";
    if (h) return en ? h + " h " + pad(m) + " min" : h + " 小时 " + pad(m) + " 分";
    if (fine) return en ? m + " min " + pad(sec) + " s" : m + " 分 " + pad(sec) + " 秒";
    return en ? m + " min" : m + " 分钟";
  }

  function text(remaining) {
    if (remaining > 0) {
      const left = span(Math.ceil(remaining), true);
      return en ? left + " left" : "剩 " + left;
    }
    const over = -remaining;
    const late = over < 60 ? (en ? Math.floor(over) + " s" : Math.floor(over) + " 秒") : span(over, false);
    return en ? late + " overdue" : "超时 " + late;
  }

  function state(remaining, windowS) {
    if (remaining <= 0) return "breached";
    if (remaining < WARN_FLOOR_S || (windowS && remaining < WARN_SHARE * windowS)) return "warn";
    return "ok";
  }

  function tick() {
    const now = Date.now() + skew;
    document.querySelectorAll(".sla[data-due]").forEach((el) => {
      const remaining = (Number(el.dataset.due) - now) / 1000;
      const st = state(remaining, Number(el.dataset.window) || 0);
      const out = el.querySelector(".sla-text");
      const value = text(remaining);
      if (out && out.textContent !== value) out.textContent = value;
      if (el.dataset.state !== st) {
        el.dataset.state = st;
        el.classList.remove("sla-ok", "sla-warn", "sla-breached");
        el.classList.add("sla-" + st);
        const card = el.closest(".ticket-card");
        if (card) {
          card.classList.remove("sla-ok", "sla-warn", "sla-breached");
          card.classList.add("sla-" + st);
        }
      }
    });
  }

  if (document.querySelector(".sla[data-due]") || document.getElementById("live-body")) {
    tick();
    setInterval(tick, 1000);
  }
})();

/* The wall display (大屏, /wall): shows one slide at a time — the estate overview, then each equipment room — for
 * page-data rotate_s seconds each. A live update swaps every slide's HTML; the slide on screen stays by its key.
 * Printable records: a [data-print] button prints the page (no inline script under the pages' CSP).
 */
(function () {
  "use strict";

  document.querySelectorAll("[data-print]").forEach((el) => el.addEventListener("click", () => window.print()));

  const dataEl = document.getElementById("page-data");
  const page = dataEl ? JSON.parse(dataEl.textContent) : {};
  if (!page.wall) return;
  const every = Math.max(5, Number(page.rotate_s) || 15) * 1000;
  let current = "overview";

  function slides() {
    return Array.from(document.querySelectorAll(".wall-slide"));
  }

  function show(key) {
    const all = slides();
    if (!all.length) return;
    if (!all.some((el) => el.dataset.slide === key)) key = all[0].dataset.slide;
    current = key;
    all.forEach((el) => el.classList.toggle("is-current", el.dataset.slide === key));
    document.querySelectorAll(".wall-dots [data-dot]").forEach((el) => {
      el.classList.toggle("is-current", el.dataset.dot === key);
    });
    document.body.dataset.slide = key;
  }

  function next() {
    const keys = slides().map((el) => el.dataset.slide);
    if (!keys.length) return;
    const at = keys.indexOf(current);
    show(keys[(at + 1) % keys.length]);
  }

  document.addEventListener("steward:html-swapped", () => show(current));
  show(current);
  setInterval(next, every);
})();
