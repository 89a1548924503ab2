/* The config page's Usage tab (CONTRACT.md §6 "Who sees it").
 *
 * Reads the admin usage API (GET /admin/api/usage, grouped by token and by status, bucketed by
 * hour or day) and GET /admin/api/keys (each entry's limits, this period's usage and remaining
 * budget); while a gateway does not serve /admin/api/keys (404), budgets and limits come from
 * the config as written and "used / left" is not shown. Charts are drawn with Chart.js, served
 * by the gateway itself from /static/vendor/chart.js/ and loaded the first time the tab opens.
 */
(function () {
  "use strict";

  const G = window.GatewayAdmin;
  const $ = (id) => document.getElementById(id);
  const el = G.el;
  const CHART_JS = "/static/vendor/chart.js/chart.umd.js";
  const RANGES = { "24h": { seconds: 86400, bucket: "hour" }, "7d": { seconds: 7 * 86400, bucket: "day" }, "30d": { seconds: 30 * 86400, bucket: "day" } };
  const PALETTE = ["#2563eb", "#16a34a", "#f59e0b", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#ea580c", "#4f46e5", "#0d9488"];
  const ERROR_COLORS = { 4: ["#f59e0b", "#fbbf24", "#d97706", "#fcd34d"], 5: ["#dc2626", "#f87171", "#b91c1c", "#fca5a5"] };
  const REFRESH_MS = 15000;
  const charts = {};
  let chartLoader = null;
  let timer = null;
  let loading = null;

  // -- formatting -----------------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US");
  function usd(value) {
    if (!value) return "$0.00";
    return value < 0.01 ? "$" + value.toPrecision(2) : "$" + value.toFixed(2);
  }
  function compact(value) {
    return value >= 10000 ? new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(value) : integer.format(value);
  }
  function bucketLabel(iso, bucket) {
    const date = new Date(iso);
    const day = date.toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
    if (bucket === "day") return day;
    const hour = String(date.getUTCHours()).padStart(2, "0") + ":00";
    return date.getUTCHours() === 0 ? `${day} ${hour}` : hour;
  }

  /** The first value found at any of the dotted `paths` of `object`. */
  function pick(object, ...paths) {
    for (const path of paths) {
      let value = object;
      for (const part of path.split(".")) value = value === null || value === undefined ? undefined : value[part];
      if (value !== undefined && value !== null) return value;
    }
    return undefined;
  }

  // -- data -----------------------------------------------------------------------------------

  function window_() {
    const range = RANGES[$("usage-range").value] || RANGES["30d"];
    const size = range.bucket === "hour" ? 3600 : 86400;
    const now = Date.now() / 1000;
    const start = Math.floor((now - range.seconds) / size + 1) * size; // whole buckets, the current one last
    return { from: new Date(start * 1000).toISOString(), bucket: range.bucket, start, size, now };
  }

  function query(params) {
    return "?" + new URLSearchParams(params).toString();
  }

  async function keysInfo() {
    try {
      const data = (await G.api("GET", "/keys")).data;
      const list = Array.isArray(data) ? data : (data && (data.data || data.keys)) || [];
      return new Map(list.filter((k) => k && k.name).map((k) => [k.name, k]));
    } catch (error) {
      if (error.status === 404) return null; // not served by this gateway: usage only
      throw error;
    }
  }

  async function load() {
    const w = window_();
    const [perToken, series, statuses, keys] = await Promise.all([
      G.api("GET", "/usage" + query({ from: w.from, group_by: "token" })),
      G.api("GET", "/usage" + query({ from: w.from, group_by: "token", bucket: w.bucket })),
      G.api("GET", "/usage" + query({ from: w.from, group_by: "status", bucket: w.bucket })),
      keysInfo(),
    ]);
    return { w, perToken: perToken.data.data, series: series.data.data, statuses: statuses.data.data, keys };
  }

  // -- the table ------------------------------------------------------------------------------

  function limitsOf(name, keys) {
    const info = keys && keys.get(name);
    const fromConfig = G.entries().find((e) => e && G.labelOf(e, G.entries().indexOf(e)) === name) || {};
    const get = (field) => {
      const value = info ? pick(info, field, "limits." + field) : undefined;
      return value !== undefined ? value : fromConfig[field];
    };
    return {
      rpm: get("rpm_limit"), tpm: get("tpm_limit"), parallel: get("max_parallel_requests"),
      budget: get("max_budget"), tokenBudget: get("token_budget"), duration: get("budget_duration"),
      expires: get("expires"), models: get("models"), internal: fromConfig.internal === true,
      used: info ? pick(info, "usage.cost_usd", "period.cost_usd", "spend", "budget.used_usd", "budget_used") : undefined,
      left: info ? pick(info, "remaining.budget_usd", "remaining_budget", "budget.remaining_usd", "budget_left") : undefined,
      tokensUsed: info ? pick(info, "usage.tokens", "period.tokens", "budget.used_tokens", "tokens_used") : undefined,
      tokensLeft: info ? pick(info, "remaining.tokens", "remaining_tokens", "budget.remaining_tokens", "tokens_left") : undefined,
    };
  }

  function budgetCell(l, keys) {
    const parts = [];
    const per = l.duration ? ` / ${l.duration}` : "";
    if (l.budget !== undefined) {
      if (keys && l.used !== undefined) {
        const share = l.budget > 0 ? Math.min(1, l.used / l.budget) : 1;
        const bar = el("div", { class: "meter" + (share >= 0.9 ? " meter-high" : "") }, el("span", { dataset: { share: String(share) } }));
        bar.firstChild.style.width = (share * 100).toFixed(1) + "%";
        const left = l.left !== undefined ? l.left : Math.max(0, l.budget - l.used);
        parts.push(el("div", { class: "budget-line", text: `${usd(l.used)} used · ${usd(left)} left of ${usd(l.budget)}${per}` }), bar);
      } else {
        parts.push(el("div", { class: "budget-line", text: `${usd(l.budget)}${per}` }));
      }
    }
    if (l.tokenBudget !== undefined) {
      const text = keys && l.tokensUsed !== undefined
        ? `${compact(l.tokensUsed)} used · ${compact(l.tokensLeft !== undefined ? l.tokensLeft : Math.max(0, l.tokenBudget - l.tokensUsed))} left of ${compact(l.tokenBudget)} tokens${per}`
        : `${compact(l.tokenBudget)} tokens${per}`;
      parts.push(el("div", { class: "budget-line", text }));
    }
    return parts.length ? parts : el("span", { class: "dash", text: "—" });
  }

  function limitsCell(l) {
    const chips = [];
    if (l.rpm !== undefined) chips.push(`${integer.format(l.rpm)} rpm`);
    if (l.tpm !== undefined) chips.push(`${compact(l.tpm)} tpm`);
    if (l.parallel !== undefined) chips.push(`${l.parallel} parallel`);
    if (l.models && [].concat(l.models).length) chips.push(`models: ${[].concat(l.models).join(", ")}`);
    if (!chips.length) return el("span", { class: "dash", text: "—" });
    return el("div", { class: "chips" }, chips.map((text) => el("span", { class: "chip", text })));
  }

  function expiresCell(expires) {
    if (!expires) return el("span", { class: "dash", text: "never" });
    const date = typeof expires === "number" ? new Date(expires * 1000) : new Date(expires);
    if (isNaN(date)) return el("span", { text: String(expires) });
    const text = date.toISOString().slice(0, 16).replace("T", " ").replace(" 00:00", "") + (date.getUTCHours() || date.getUTCMinutes() ? " UTC" : "");
    const past = date.getTime() < Date.now();
    return el("span", { class: past ? "pill pill-expired" : "", title: String(expires), text: past ? `expired ${text}` : text });
  }

  function renderTable(data) {
    const totals = new Map(data.perToken.map((row) => [row.group, row]));
    const names = [];
    for (const [index, entry] of G.entries().entries()) {
      if (entry && !entry.internal && entry.enabled !== false) names.push(G.labelOf(entry, index));
    }
    if (data.keys) for (const [name, info] of data.keys) if (!info.internal) names.push(name); // router members: only with usage
    for (const row of data.perToken) names.push(row.group);
    const body = $("usage-body");
    body.replaceChildren();
    const unique = [...new Set(names)];
    for (const name of unique) {
      const row = totals.get(name) || { requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, cost_usd: 0 };
      const l = limitsOf(name, data.keys);
      const tokens = row.prompt_tokens + row.completion_tokens;
      body.append(
        el(
          "tr",
          { class: "usage-row", dataset: { name } },
          el("td", { class: "name" }, el("strong", { text: name })),
          el("td", { class: "num", dataset: { col: "requests" }, text: integer.format(row.requests) }),
          el("td", { class: "num" + (row.errors ? " has-errors" : ""), dataset: { col: "errors" }, text: integer.format(row.errors) }),
          el("td", { class: "num", dataset: { col: "tokens" }, title: `${integer.format(row.prompt_tokens)} prompt · ${integer.format(row.completion_tokens)} completion`, text: compact(tokens) }),
          el("td", { class: "num", dataset: { col: "cost" }, text: usd(row.cost_usd) }),
          el("td", { class: "budget", dataset: { col: "budget" } }, budgetCell(l, data.keys)),
          el("td", { dataset: { col: "limits" } }, limitsCell(l)),
          el("td", { class: "expires", dataset: { col: "expires" } }, expiresCell(l.expires))
        )
      );
    }
    $("usage-empty").hidden = unique.length > 0;
    $("usage-keys-note").hidden = data.keys !== null;
    const sum = (field) => data.perToken.reduce((total, row) => total + row[field], 0);
    const cards = [
      ["Requests", integer.format(sum("requests"))],
      ["Errors", integer.format(sum("errors"))],
      ["Tokens", compact(sum("prompt_tokens") + sum("completion_tokens"))],
      ["Cost", usd(sum("cost_usd"))],
    ];
    $("usage-summary").replaceChildren(...cards.map(([label, value]) => el("div", { class: "card stat", dataset: { stat: label.toLowerCase() } }, el("div", { class: "stat-label", text: label }), el("div", { class: "stat-value", text: value }))));
  }

  // -- charts ---------------------------------------------------------------------------------

  function loadChartJs() {
    if (window.Chart) return Promise.resolve(window.Chart);
    if (!chartLoader) {
      chartLoader = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = CHART_JS;
        script.onload = () => resolve(window.Chart);
        script.onerror = () => {
          chartLoader = null;
          reject(new Error("could not load " + CHART_JS));
        };
        document.head.append(script);
      });
    }
    return chartLoader;
  }

  function buckets(w) {
    const list = [];
    for (let t = w.start; t <= w.now; t += w.size) list.push(new Date(t * 1000).toISOString().replace(".000Z", "Z"));
    return list;
  }

  /** Chart.js datasets: one per group, a value per bucket (0 where none). */
  function datasets(rows, labels, value, colorOf) {
    const groups = new Map();
    for (const row of rows) {
      const key = String(row.group);
      if (!groups.has(key)) groups.set(key, new Array(labels.length).fill(0));
      const at = labels.indexOf(row.bucket);
      if (at >= 0) groups.get(key)[at] += value(row);
    }
    return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([group, data], index) => {
      const color = colorOf(group, index);
      return { label: group, data, backgroundColor: color, borderColor: color, borderWidth: 0, maxBarThickness: 28 };
    });
  }

  function draw(Chart, id, labels, sets, format) {
    const config = {
      type: "bar",
      data: { labels, datasets: sets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 10, boxHeight: 10, font: { size: 11 } } },
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${format(item.raw)}` } },
        },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { font: { size: 11 }, maxRotation: 0, autoSkipPadding: 12 } },
          y: { stacked: true, beginAtZero: true, ticks: { font: { size: 11 }, callback: (v) => format(v), maxTicksLimit: 6 }, grid: { color: "#eef2f7" } },
        },
      },
    };
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].update("none");
    } else {
      charts[id] = new Chart($(id), config);
    }
    $(id).dataset.points = String(sets.reduce((n, s) => n + s.data.filter((v) => v).length, 0));
  }

  async function renderCharts(data) {
    const Chart = await loadChartJs();
    const keys = buckets(data.w);
    const labels = keys.map((k) => bucketLabel(k, data.w.bucket));
    const names = [...new Set(data.series.map((r) => String(r.group)))].sort();
    const tokenColor = (group) => PALETTE[names.indexOf(group) % PALETTE.length];
    const series = (value) => datasets(data.series, keys, value, tokenColor);
    draw(Chart, "chart-requests", labels, series((r) => r.requests), (v) => compact(v));
    draw(Chart, "chart-tokens", labels, series((r) => r.prompt_tokens + r.completion_tokens), (v) => compact(v));
    draw(Chart, "chart-cost", labels, series((r) => r.cost_usd), (v) => usd(v));
    const errors = data.statuses.filter((r) => Number(r.group) >= 400);
    const seen = {};
    const errorColor = (group) => {
      const shades = ERROR_COLORS[String(group)[0]] || ["#64748b"];
      const family = String(group)[0];
      seen[family] = seen[family] || [];
      if (!seen[family].includes(group)) seen[family].push(group);
      return shades[seen[family].indexOf(group) % shades.length];
    };
    draw(Chart, "chart-errors", labels, datasets(errors, keys, (r) => r.requests, errorColor), (v) => compact(v));
  }

  // -- the tab --------------------------------------------------------------------------------

  function csvLink() {
    const w = window_();
    $("usage-csv").href = "/admin/api/usage/events" + query({ from: w.from, format: "csv", limit: 10000 });
  }

  async function refresh() {
    if (loading) return loading;
    loading = (async () => {
      csvLink();
      try {
        const data = await load();
        $("usage-error").hidden = true;
        renderTable(data);
        await renderCharts(data);
        $("tab-usage").dataset.loaded = String(Date.now());
      } catch (error) {
        if (error.status === 401) return;
        $("usage-error").textContent = "Could not load usage: " + error.message;
        $("usage-error").hidden = false;
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  function show() {
    refresh();
    if (!timer) {
      timer = setInterval(() => {
        if (!$("tab-usage").hidden && !$("app").hidden) refresh();
      }, REFRESH_MS);
    }
  }

  $("usage-range").addEventListener("change", refresh);
  $("usage-refresh").addEventListener("click", refresh);
  G.usage = { show, refresh };
})();
