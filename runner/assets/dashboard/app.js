// The dashboard's page: the live run from /api/events and /api/bars/SYMBOL, or, in a report
// file, the run as it ended from window.IBBRIDGE_REPORT. Charts are TradingView's
// lightweight-charts; nothing here draws on its own.
"use strict";
(function () {
  const LC = window.LightweightCharts;
  const report = window.IBBRIDGE_REPORT || null;
  const errors = [];
  window.addEventListener("error", (e) => errors.push(String(e.message)));
  window.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason)));

  // What the page shows, for people and for tests (window.__dashboard.snapshot()).
  const dash = { seq: 0, state: null, charts: {}, errors: errors, ended: false, report: !!report };
  window.__dashboard = dash;

  const $ = (id) => document.getElementById(id);
  const fmt = (v, d) => (v === null || v === undefined || Number.isNaN(v)) ? "-" : Number(v).toFixed(d === undefined ? 2 : d);
  const qty = (v) => (v === null || v === undefined) ? "-" : (Number.isInteger(v) ? String(v) : String(v));
  const clock = (secs) => new Date(secs * 1000).toISOString().slice(11, 19);

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function fillTable(id, rows, cells) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren();
    for (const r of rows) {
      const tr = document.createElement("tr");
      for (const [text, cls] of cells(r)) tr.appendChild(cell(text, cls));
      body.appendChild(tr);
    }
  }

  // ---- charts -------------------------------------------------------------------------

  // Points kept per chart: what the server holds, and a little more before a trim.
  const held = () => (dash.state && dash.state.run.bars_held) || 4680;
  const KEPT = 2000;

  function chartFor(symbol) {
    let c = dash.charts[symbol];
    if (c) return c;
    const box = document.createElement("div");
    box.className = "chart-box";
    box.dataset.symbol = symbol;
    const title = document.createElement("h3");
    title.textContent = symbol;
    const area = document.createElement("div");
    area.className = "chart";
    box.append(title, area);
    $("charts").appendChild(box);
    const chart = LC.createChart(area, {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#1d2330" },
      timeScale: { timeVisible: true, secondsVisible: true },
    });
    const candles = chart.addSeries(LC.CandlestickSeries, {});
    const fast = chart.addSeries(LC.LineSeries, { color: "#2962ff", lineWidth: 1, title: "fast", priceLineVisible: false, lastValueVisible: false });
    const slow = chart.addSeries(LC.LineSeries, { color: "#ff6d00", lineWidth: 1, title: "slow", priceLineVisible: false, lastValueVisible: false });
    c = {
      chart, candles, fast, slow, plugin: LC.createSeriesMarkers(candles, []),
      points: [], marks: [], count: 0, last: null,
      // A load under way (its number: an older answer is ignored), and what came meanwhile.
      loaded: false, generation: 0, queued: [], queuedMarks: [],
    };
    dash.charts[symbol] = c;
    return c;
  }

  const candle = (p) => ({ time: p.time, open: p.open, high: p.high, low: p.low, close: p.close });
  const line = (key) => (p) => ({ time: p.time, value: p[key] });

  function signalMarker(p) {
    const buy = p.signal === "buy";
    return { time: p.time, position: buy ? "belowBar" : "aboveBar", shape: buy ? "arrowUp" : "arrowDown", color: buy ? "#1b873f" : "#c62828", text: buy ? "BUY" : "SELL" };
  }

  function markMarker(m) {
    const order = m.kind === "order";
    return { time: m.time, position: "atPriceMiddle", price: m.price, shape: order ? "circle" : "square", color: order ? "#7e57c2" : "#00897b", text: (order ? "order " : "fill ") + m.text };
  }

  function showMarkers(c) {
    if (c.last === null) { c.plugin.setMarkers([]); return; }
    const first = c.points.length ? c.points[0].time : c.last;
    const all = c.points.filter((p) => p.signal === "buy" || p.signal === "sell").map(signalMarker);
    for (const m of c.marks) {
      if (m.time < first) continue;
      // A fill after the newest bar waits for its bar; in a report it is shown at the last.
      if (m.time > c.last) { if (report) all.push(Object.assign({}, m, { time: c.last })); continue; }
      all.push(m);
    }
    all.sort((a, b) => a.time - b.time);
    c.plugin.setMarkers(all);
  }

  function drawAll(c) {
    c.candles.setData(c.points.map(candle));
    c.fast.setData(c.points.filter((b) => b.fast !== null).map(line("fast")));
    c.slow.setData(c.points.filter((b) => b.slow !== null).map(line("slow")));
  }

  function addPoint(c, p) {
    if (c.last !== null && p.time <= c.last) return false;
    c.points.push(p);
    c.last = p.time;
    c.count = c.points.length;
    if (c.points.length > held() * 1.2) {
      // Bounded like the server's: the oldest go, and the chart is drawn again.
      c.points = c.points.slice(c.points.length - held());
      c.count = c.points.length;
      drawAll(c);
    } else {
      c.candles.update(candle(p));
      if (p.fast !== null) c.fast.update(line("fast")(p));
      if (p.slow !== null) c.slow.update(line("slow")(p));
    }
    return true;
  }

  function addMark(c, m) {
    if (!c.loaded) { c.queuedMarks.push(m); return; }
    c.marks.push(markMarker(m));
    if (c.marks.length > KEPT) c.marks = c.marks.slice(c.marks.length - KEPT);
    showMarkers(c);
  }

  function setBars(symbol, data) {
    const c = chartFor(symbol);
    c.points = data.bars.slice();
    c.last = c.points.length ? c.points[c.points.length - 1].time : null;
    c.count = c.points.length;
    drawAll(c);
    const seen = new Set(data.markers.map((m) => JSON.stringify(m)));
    c.marks = data.markers.concat(c.queuedMarks.filter((m) => !seen.has(JSON.stringify(m)))).map(markMarker);
    c.loaded = true;
    for (const q of c.queued) addPoint(c, q);
    c.queued = [];
    c.queuedMarks = [];
    showMarkers(c);
    c.chart.timeScale().fitContent();
  }

  function loadBars(symbol) {
    const c = chartFor(symbol);
    c.loaded = false;
    c.generation += 1;
    const generation = c.generation;
    return fetch("api/bars/" + encodeURIComponent(symbol))
      .then((r) => r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)))
      .then((data) => { if (generation === c.generation) setBars(symbol, data); })
      .catch((err) => {
        // Tried again while it is the newest load and the run goes on.
        if (generation !== c.generation || dash.ended) return;
        setStatus("bars of " + symbol + " not loaded (" + err.message + "), retrying", "warn");
        setTimeout(() => { if (generation === c.generation) loadBars(symbol); }, 1000);
      });
  }

  // ---- tables -------------------------------------------------------------------------

  function stateClass(state) {
    if (state === "live") return "state live";
    if (state === "refused" || state === "no data" || state === "stalled" || state === "interrupted") return "state bad";
    if (state === "delayed data") return "state warn";
    return "state";
  }

  function age(row) {
    if (report || !row.last_live_bar_at_ms) return row.last_bar_time ? clock(row.last_bar_time) : "-";
    return Math.max(0, Math.round((Date.now() - row.last_live_bar_at_ms) / 1000)) + " s ago";
  }

  function renderSymbols() {
    fillTable("symbols", dash.state.symbols, (r) => [
      [r.symbol],
      [r.detail ? r.state + ": " + r.detail : r.state, stateClass(r.state)],
      [r.text.last_price], [r.text.fast], [r.text.slow], [r.signal || "-"],
      [String(r.history_bars)], [String(r.live_bars)], [age(r)],
    ]);
    const rows = $("symbols").querySelectorAll("tbody tr");
    dash.state.symbols.forEach((r, i) => { rows[i].dataset.symbol = r.symbol; });
  }

  function renderPositions() {
    fillTable("positions", dash.state.positions, (p) => [
      [p.symbol], [qty(p.quantity)], [fmt(p.avg_cost)], [fmt(p.last_price)],
      [fmt(p.unrealised)], [fmt(p.realised)], [fmt(p.commissions)],
    ]);
    let total = 0;
    for (const p of dash.state.positions) total += p.realised + (p.unrealised || 0) - p.commissions;
    $("pnl").textContent = dash.state.run.trading ? "P&L " + fmt(total) : "";
  }

  function renderOrders() {
    fillTable("orders", dash.state.orders, (o) => [
      [o.ref], [o.symbol], [o.side], [qty(o.quantity)], [fmt(o.limit)], [o.status],
      [qty(o.filled)], [fmt(o.avg_price)], [o.reason || ""],
    ]);
  }

  function renderFills() {
    fillTable("fills", dash.state.fills.slice().reverse(), (f) => [
      [clock(f.time)], [f.ref], [f.symbol], [f.side], [qty(f.quantity)], [fmt(f.price)], [fmt(f.commission)],
    ]);
  }

  function renderHealth() {
    const h = dash.state.health;
    $("h-broker").textContent = h.broker + (h.broker_detail ? " (" + h.broker_detail + ")" : "") +
      "; lost " + h.broker_losses + " time(s), restored with data lost " + h.broker_restores_data_lost;
    $("h-broker").className = h.broker === "connected" || h.broker === "restored" ? "live" : "bad";
    $("h-restarts").textContent = String(h.worker_restarts);
    const rt = h.round_trip_us;
    $("h-rtt").textContent = rt.samples ? "median " + fmt(rt.median, 1) + " µs, last " + fmt(rt.last, 1) + " µs (" + rt.samples + " samples)" : "-";
    const d = h.dropped;
    $("h-dropped").textContent = "dashboard updates " + d.dashboard_updates + ", browser events " + d.browser_events +
      ", worker logs " + d.worker_logs + ", worker events " + d.worker_events;
    const list = $("replacements");
    list.replaceChildren();
    for (const r of h.replacements) {
      const li = document.createElement("li");
      li.textContent = new Date(r.at_ms).toISOString().slice(11, 19) + " worker " + r.generation + " took over: " + r.reason;
      list.appendChild(li);
    }
  }

  function addWarning(w) {
    const li = document.createElement("li");
    li.className = w.level === "error" ? "bad" : "warn";
    li.textContent = new Date(w.at_ms).toISOString().slice(11, 19) + " " + w.level + ": " + w.text;
    const list = $("warnings");
    list.prepend(li);
    while (list.children.length > 200) list.lastChild.remove();
  }

  function renderAll() {
    const run = dash.state.run;
    $("run").textContent = run.backend + ", " + run.bar_seconds + "-s bars, SMA " + run.strategy.fast + "/" + run.strategy.slow +
      (run.trading ? ", trading" : ", not trading");
    renderSymbols();
    renderPositions();
    renderOrders();
    renderFills();
    renderHealth();
    $("warnings").replaceChildren();
    for (const w of dash.state.health.warnings.slice().reverse()) addWarning(w);
  }

  function setStatus(text, cls) {
    $("status").textContent = text;
    $("status").className = "status " + (cls || "");
  }

  // ---- the live page ------------------------------------------------------------------

  function upsert(list, key, item) {
    const i = list.findIndex((x) => x[key] === item[key]);
    if (i >= 0) list[i] = item; else list.push(item);
  }

  function setRow(row) {
    const i = dash.state.symbols.findIndex((s) => s.symbol === row.symbol);
    if (i >= 0) dash.state.symbols[i] = row;
    renderSymbols();
  }

  const handlers = {
    history(m) { setRow(m); return loadBars(m.symbol); },
    bar(m) {
      const c = chartFor(m.symbol);
      if (c.loaded) { if (addPoint(c, m.point)) showMarkers(c); } else if (c.queued.length < held()) c.queued.push(m.point);
      setRow(m.row);
      if (m.positions) { dash.state.positions = m.positions; renderPositions(); }
    },
    order(m) {
      if (!m.order) return;
      upsert(dash.state.orders, "ref", m.order);
      if (dash.state.orders.length > KEPT) dash.state.orders.shift();
      renderOrders();
      if (m.marker) addMark(chartFor(m.order.symbol), m.marker);
    },
    fill(m) {
      dash.state.fills.push(m.fill);
      if (dash.state.fills.length > KEPT) dash.state.fills.shift();
      dash.state.positions = m.positions;
      renderFills();
      renderPositions();
      if (m.marker) addMark(chartFor(m.fill.symbol), m.marker);
    },
    symbol(m) { setRow(m); },
    positions(m) { dash.state.positions = m; renderPositions(); },
    health(m) { dash.state.health = m; renderHealth(); },
    warning(m) { addWarning(m); },
    notice(m) { addWarning({ at_ms: Date.now(), level: "notice", text: "broker notice " + m.code + ": " + m.message }); },
  };

  function connect() {
    const events = new EventSource("api/events");
    events.addEventListener("state", (e) => {
      const state = JSON.parse(e.data);
      dash.state = state;
      dash.seq = state.seq;
      dash.ended = state.ended;
      renderAll();
      setStatus(state.ended ? "run ended" : "live", state.ended ? "" : "live");
      Promise.all(state.symbols.map((s) => loadBars(s.symbol))).catch((err) => errors.push(String(err)));
    });
    for (const name of Object.keys(handlers)) {
      events.addEventListener(name, (e) => {
        if (!dash.state) return;
        const result = handlers[name](JSON.parse(e.data));
        if (result && result.catch) result.catch((err) => errors.push(String(err)));
        dash.seq = Number(e.lastEventId);
      });
    }
    events.addEventListener("end", (e) => {
      const state = JSON.parse(e.data);
      dash.state = state;
      dash.seq = state.seq;
      dash.ended = true;
      renderAll();
      setStatus("run ended");
      events.close();
    });
    events.addEventListener("resync", () => {
      // This page read too slowly and missed events: read everything again.
      events.close();
      setStatus("catching up", "warn");
      connect();
    });
    events.onerror = () => { if (!dash.ended) setStatus("disconnected, retrying", "bad"); };
  }

  // ---- the report ---------------------------------------------------------------------

  function showReport(data) {
    dash.state = data;
    dash.seq = data.seq;
    dash.ended = true;
    renderAll();
    setStatus("report of a run that ended");
    for (const b of data.bars) setBars(b.symbol, b);
    $("report-only").hidden = false;
    const pnl = LC.createChart($("pnl-chart"), { autoSize: true, timeScale: { timeVisible: true, secondsVisible: true } });
    pnl.addSeries(LC.LineSeries, { color: "#1d2330", lineWidth: 2 }).setData(data.pnl_series);
    const rtt = LC.createChart($("rtt-chart"), { autoSize: true, timeScale: { timeVisible: true, secondsVisible: true } });
    const seconds = new Map();
    for (const r of data.round_trips) seconds.set(Math.floor(r.at_ms / 1000), r.us);
    rtt.addSeries(LC.LineSeries, { color: "#2962ff", lineWidth: 1 })
      .setData(Array.from(seconds, ([time, value]) => ({ time, value })).sort((a, b) => a.time - b.time));
    const f = data.final_round_trip_us;
    $("rtt-final").textContent = f.samples
      ? "At the end, " + f.samples + " round trips: median " + fmt(f.p50, 1) + " µs, p99 " + fmt(f.p99, 1) + " µs, p99.9 " + fmt(f.p999, 1) + " µs."
      : "No round trip measured at the end.";
    const timeline = $("timeline");
    const items = [];
    for (const r of data.health.replacements) items.push([r.at_ms, "worker " + r.generation + " took over: " + r.reason]);
    for (const w of data.warnings_all) items.push([w.at_ms, w.level + ": " + w.text]);
    for (const s of data.symbols) {
      if (s.state !== "live" && s.state !== "history") items.push([null, s.symbol + " " + s.state + (s.detail ? ": " + s.detail : "")]);
    }
    items.sort((a, b) => (a[0] || 0) - (b[0] || 0));
    for (const [at, text] of items) {
      const li = document.createElement("li");
      li.textContent = (at ? new Date(at).toISOString().slice(11, 19) + " " : "at the end: ") + text;
      timeline.appendChild(li);
    }
    if (!items.length) timeline.appendChild(Object.assign(document.createElement("li"), { textContent: "none" }));
  }

  // What the page shows now, for a test to compare with /api/state.
  dash.snapshot = function () {
    const symbols = {};
    for (const tr of document.querySelectorAll("#symbols tbody tr")) {
      const td = tr.querySelectorAll("td");
      const c = dash.charts[tr.dataset.symbol];
      symbols[tr.dataset.symbol] = {
        state: td[1].textContent, last_price: td[2].textContent, fast: td[3].textContent, slow: td[4].textContent,
        signal: td[5].textContent, history_bars: td[6].textContent, live_bars: td[7].textContent,
        candles: c ? c.count : 0,
      };
    }
    return { seq: dash.seq, ended: dash.ended, report: dash.report, errors: errors.slice(), symbols: symbols };
  };

  if (report) {
    showReport(report);
  } else {
    setInterval(() => { if (dash.state && !dash.ended) renderSymbols(); }, 1000);
    connect();
  }
})();
