/*
 * The supervisors' dashboard (agent.html, view "dashboard"): the live queue and agents' states and loads from
 * the console's snapshot polls, and hourly charts of the last 24 hours from GET /metrics/hourly (conversations
 * opened, the bot's answers / reviews / handovers and its containment), and the last 7 days from GET /metrics (wait,
 * first response, handle time, CSAT, first contact resolution; NPS when the survey asks it). Charts are uPlot (npm, vendored by the
 * web build); each has its numbers in a table for keyboards and screen readers.
 */
(function () {
  "use strict";
  KefuI18n.add({
    zh: {
      "db.title": "数据看板",
      "db.waiting": "排队中", "db.longestWait": "最长等待", "db.online": "在线客服", "db.seats": "{n} 个座席",
      "db.open": "进行中的会话", "db.opened24": "24 小时会话量", "db.containment": "机器人解决率（24 小时）",
      "db.containmentHelp": "机器人直接回答的占其全部决定的比例",
      "db.agents": "客服状态与负载", "db.queue": "实时队列", "db.nobodyWaiting": "无人排队",
      "db.name": "客服", "db.state": "状态", "db.load": "负载", "db.console": "工作台",
      "db.connected": "已连接", "db.notConnected": "未连接",
      "db.position": "位置", "db.customer": "客户", "db.group": "分组", "db.waited": "已等待", "db.estimate": "预计",
      "db.perHour": "每小时会话量（最近 24 小时）", "db.botPerHour": "机器人每小时的决定（最近 24 小时）",
      "db.hour": "时间", "db.conversations": "会话", "db.answered": "已回答", "db.review": "转人工审核",
      "db.handoff": "转人工", "db.numbers": "查看数据", "db.updated": "更新于 {time}",
      "db.chartSummary": "{title}：共 {total}，最高 {max}（{hour}）",
      "db.loadFailed": "无法加载数据：{message}",
      "db.week": "最近 7 天", "db.waitP": "等待时间 p50 / p90", "db.frtP": "首次响应 p50 / p90", "db.aht": "平均处理时长", "db.csat": "满意度（CSAT）",
      "db.csatHelp": "{n} 个评价", "db.fcr": "首次解决率", "db.resolution": "解决率 {value}",
      "db.nps": "净推荐值（NPS）", "db.npsHelp": "回答 {n} 个 · 推荐者 {p} · 中立者 {m} · 贬损者 {d}",
      "db.daily": "每天的等待与处理时长（最近 7 天）", "db.day": "日期", "db.avgWait": "平均等待（秒）",
      "db.ahtSeconds": "平均处理（秒）",
      "state.online": "在线", "state.away": "离开", "state.offline": "下线",
    },
    en: {
      "db.title": "Dashboard",
      "db.waiting": "Waiting", "db.longestWait": "Longest wait", "db.online": "Agents online", "db.seats": "{n} seats",
      "db.open": "Open conversations", "db.opened24": "Conversations, 24 h", "db.containment": "Bot containment (24 h)",
      "db.containmentHelp": "the share of the bot's decisions that were answers",
      "db.agents": "Agents: state and load", "db.queue": "Live queue", "db.nobodyWaiting": "Nobody is waiting",
      "db.name": "Agent", "db.state": "State", "db.load": "Load", "db.console": "Console",
      "db.connected": "connected", "db.notConnected": "not connected",
      "db.position": "Position", "db.customer": "Customer", "db.group": "Group", "db.waited": "Waited", "db.estimate": "Estimate",
      "db.perHour": "Conversations per hour (last 24 hours)", "db.botPerHour": "The bot's decisions per hour (last 24 hours)",
      "db.hour": "Hour", "db.conversations": "Conversations", "db.answered": "Answered", "db.review": "Sent for review",
      "db.handoff": "Handed over", "db.numbers": "Show the numbers", "db.updated": "Updated {time}",
      "db.chartSummary": "{title}: {total} in all, at most {max} ({hour})",
      "db.loadFailed": "Could not load the numbers: {message}",
      "db.week": "last 7 days", "db.waitP": "Wait p50 / p90", "db.frtP": "First response p50 / p90", "db.aht": "Average handle time", "db.csat": "CSAT",
      "db.csatHelp": "{n} ratings", "db.fcr": "First contact resolution", "db.resolution": "resolution {value}",
      "db.nps": "Net Promoter Score (NPS)", "db.npsHelp": "answers: {n} · promoters {p} · passives {m} · detractors {d}",
      "db.daily": "Wait and handle time per day (last 7 days)", "db.day": "Day", "db.avgWait": "Average wait (s)",
      "db.ahtSeconds": "Average handle time (s)",
      "state.online": "online", "state.away": "away", "state.offline": "offline",
    },
  });
  const t = KefuI18n.t;
  const COLORS = { brand: "#1766d1", ok: "#1a7f45", warn: "#9a6200", bad: "#b42318" };
  const REFRESH_MS = 60000;
  let root = null;
  let hourly = null; // the last /metrics/hourly answer
  let week = null; // the last /metrics answer (per day, 7 days)
  let charts = [];
  let timer = null;

  const { el } = KefuDom;
  function ago(seconds) {
    if (seconds == null) return "–";
    return seconds < 60 ? `${seconds}s` : seconds < 3600 ? `${Math.round(seconds / 60)}min` : `${(seconds / 3600).toFixed(1)}h`;
  }
  const sum = (xs) => (xs || []).reduce((a, b) => a + b, 0);
  function hourLabel(hour) { // "2026-11-21T09" (UTC) in the viewer's time and language
    const d = new Date(`${hour}:00:00Z`);
    return d.toLocaleTimeString(KefuI18n.locale, { hour: "2-digit", minute: "2-digit" });
  }

  function mount() {
    root = document.getElementById("view-dashboard");
    root.replaceChildren(
      el("h2", { id: "db-title", tabindex: "-1", text: t("db.title") }),
      el("section", { class: "db-cards", id: "db-cards", "aria-live": "polite" }),
      el("div", { class: "db-grid" },
        el("section", { "aria-labelledby": "db-agents-title" }, el("h3", { id: "db-agents-title", text: t("db.agents") }),
          el("div", { id: "db-agents" })),
        el("section", { "aria-labelledby": "db-queue-title" }, el("h3", { id: "db-queue-title", text: t("db.queue") }),
          el("div", { id: "db-queue" }))),
      chartSection("db-opened", t("db.perHour")),
      chartSection("db-bot", t("db.botPerHour")),
      chartSection("db-daily", t("db.daily")),
      el("p", { id: "db-status", class: "muted", role: "status" }));
  }
  function chartSection(id, title) {
    return el("section", { class: "db-chart", "aria-labelledby": `${id}-title` },
      el("h3", { id: `${id}-title`, text: title }),
      el("div", { id: `${id}-plot`, class: "db-plot", role: "img" }),
      el("details", {}, el("summary", { text: t("db.numbers") }), el("div", { id: `${id}-table` })));
  }

  function table(headers, rows) {
    return el("table", { class: "db-table" },
      el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c, i) => el(i ? "td" : "th", i ? {} : { scope: "row" }, c))))));
  }

  function card(label, value, help) {
    return el("div", { class: "db-card" }, el("span", { class: "db-value", text: value }),
      el("span", { class: "db-label", text: label }), help ? el("span", { class: "db-help", text: help }) : null);
  }

  function renderLive() {
    if (!root) return;
    const f = window.kefuConsole.snapshot;
    const totals = (f && f.totals) || {};
    const queue = (f && f.queue) || [];
    const longest = queue.reduce((m, q) => Math.max(m, q.waitingSeconds || 0), 0);
    const series = (hourly && hourly.series) || {};
    const decisions = sum(series["bot.answer"]) + sum(series["bot.review"]) + sum(series["bot.handoff"]);
    const total = (week && week.total) || {};
    const pct = (x) => (typeof x === "number" ? `${Math.round(x * 100)}%` : "–");
    const secs = (x) => (typeof x === "number" ? ago(Math.round(x)) : "–");
    document.getElementById("db-cards").replaceChildren(...[ // (no NPS card: null, left out)
      card(t("db.waiting"), String(totals.waiting ?? "–")),
      card(t("db.longestWait"), queue.length ? ago(longest) : "–"),
      card(t("db.online"), String(totals.online ?? "–"), totals.seats != null ? t("db.seats", { n: totals.seats }) : null),
      card(t("db.open"), String(totals.open ?? "–")),
      card(t("db.opened24"), hourly ? String(sum(series["conversations.opened"])) : "–"),
      card(t("db.containment"), decisions ? `${Math.round((100 * sum(series["bot.answer"])) / decisions)}%` : "–",
        t("db.containmentHelp")),
      card(t("db.waitP"), `${secs(total.waitP50S)} / ${total.waitP90Over ? "> 1h" : secs(total.waitP90S)}`, t("db.week")),
      card(t("db.frtP"), `${secs(total.frtP50S)} / ${total.frtP90S == null && total.frtP50S != null ? "> 1h" : secs(total.frtP90S)}`,
        t("db.week")),
      card(t("db.aht"), secs(total.ahtS), t("db.week")),
      card(t("db.csat"), typeof total.csatAvg === "number" ? total.csatAvg.toFixed(1) : "–",
        t("db.csatHelp", { n: sum(Object.values(total.csatDistribution || {})) })),
      card(t("db.fcr"), pct(total.fcrRate), t("db.resolution", { value: pct(total.resolutionRate) })),
      // NPS only where the survey asks it (answers in the last 7 days): % promoters − % detractors, −100..100
      total.npsCount > 0 && typeof total.nps === "number"
        ? card(t("db.nps"), `${total.nps > 0 ? "+" : ""}${Math.round(total.nps)}`, t("db.npsHelp", {
          n: total.npsCount, p: total.npsPromoters, m: total.npsPassives, d: total.npsDetractors }))
        : null].filter(Boolean));
    const agents = (f && f.agents) || [];
    document.getElementById("db-agents").replaceChildren(table(
      [t("db.name"), t("db.state"), t("db.load"), t("db.console")],
      agents.map((a) => [a.name || a.agentId, t(`state.${a.presence}`), `${a.load}/${a.maxConcurrent}`,
                         a.connections ? t("db.connected") : t("db.notConnected")])));
    document.getElementById("db-queue").replaceChildren(queue.length ? table(
      [t("db.position"), t("db.customer"), t("db.group"), t("db.waited"), t("db.estimate")],
      queue.map((q) => [`#${q.position}`, (q.customer && (q.customer.name || q.customer.id)) || "", q.queue === "*" ? "–" : q.queue,
                        ago(q.waitingSeconds), ago(q.estimatedWaitSeconds)]))
      : el("p", { class: "muted", text: t("db.nobodyWaiting") }));
  }

  function plot(id, title, lines, bars) {
    const box = document.getElementById(`${id}-plot`);
    const hours = hourly.hours;
    const xs = hours.map((h) => Date.parse(`${h}:00:00Z`) / 1000);
    const total = sum(lines.map((l) => sum(l.values)));
    const peak = lines.reduce((best, l) => l.values.reduce((b, v, i) => (v > b.v ? { v, i } : b), best), { v: 0, i: 0 });
    box.setAttribute("aria-label", t("db.chartSummary", { title, total, max: peak.v, hour: hourLabel(hours[peak.i]) }));
    box.replaceChildren();
    const width = Math.max(280, Math.min(box.clientWidth || 640, 900));
    const chart = new window.uPlot({
      width, height: 220,
      scales: { x: { time: true } },
      axes: [{ stroke: "#4b5565", grid: { stroke: "#e3e6eb" } }, { stroke: "#4b5565", grid: { stroke: "#e3e6eb" } }],
      series: [{}].concat(lines.map((l) => ({
        label: l.label, stroke: l.color, width: 2,
        fill: bars ? l.color + "cc" : undefined,
        paths: bars ? window.uPlot.paths.bars({ size: [0.6, 40] }) : undefined,
        points: { show: !bars },
      }))),
    }, [xs].concat(lines.map((l) => l.values)), box);
    charts.push(chart);
    document.getElementById(`${id}-table`).replaceChildren(table(
      [t("db.hour")].concat(lines.map((l) => l.label)),
      hours.map((h, i) => [hourLabel(h)].concat(lines.map((l) => String(l.values[i]))))));
  }

  function renderDaily() {
    if (!root || !week || !window.uPlot) return;
    const box = document.getElementById("db-daily-plot");
    const days = week.series.map((d) => d.period);
    const wait = week.series.map((d) => (typeof d.avgWaitS === "number" ? Math.round(d.avgWaitS) : null));
    const aht = week.series.map((d) => (typeof d.ahtS === "number" ? Math.round(d.ahtS) : null));
    box.setAttribute("aria-label", `${t("db.daily")}: ${days.map((d, i) => `${d} ${wait[i] ?? "–"} / ${aht[i] ?? "–"}`).join("; ")}`);
    box.replaceChildren();
    charts.push(new window.uPlot({
      width: Math.max(280, Math.min(box.clientWidth || 640, 900)), height: 220,
      scales: { x: { time: true } },
      axes: [{ stroke: "#4b5565", grid: { stroke: "#e3e6eb" } }, { stroke: "#4b5565", grid: { stroke: "#e3e6eb" } }],
      series: [{}, { label: t("db.avgWait"), stroke: COLORS.warn, width: 2, spanGaps: true },
               { label: t("db.ahtSeconds"), stroke: COLORS.brand, width: 2, spanGaps: true }],
    }, [days.map((d) => Date.parse(`${d}T12:00:00Z`) / 1000), wait, aht], box));
    document.getElementById("db-daily-table").replaceChildren(table(
      [t("db.day"), t("db.avgWait"), t("db.ahtSeconds")],
      days.map((d, i) => [d, wait[i] == null ? "–" : String(wait[i]), aht[i] == null ? "–" : String(aht[i])])));
  }

  function renderCharts() {
    if (!root || !hourly || !window.uPlot) return;
    for (const c of charts) c.destroy();
    charts = [];
    const s = hourly.series;
    const zeros = hourly.hours.map(() => 0);
    plot("db-opened", t("db.perHour"), [{ label: t("db.conversations"), color: COLORS.brand, values: s["conversations.opened"] || zeros }], true);
    plot("db-bot", t("db.botPerHour"), [
      { label: t("db.answered"), color: COLORS.ok, values: s["bot.answer"] || zeros },
      { label: t("db.review"), color: COLORS.warn, values: s["bot.review"] || zeros },
      { label: t("db.handoff"), color: COLORS.bad, values: s["bot.handoff"] || zeros },
    ], false);
  }

  async function loadHourly() {
    clearTimeout(timer);
    if (!root || root.hidden) return;
    try {
      [hourly, week] = await Promise.all([window.kefuConsole.api("/metrics/hourly"),
                                          window.kefuConsole.api("/metrics?granularity=day")]);
      document.getElementById("db-status").textContent = t("db.updated", { time: new Date().toLocaleTimeString(KefuI18n.locale) });
    } catch (e) {
      document.getElementById("db-status").textContent = t("db.loadFailed", { message: `${e.message} (${e.code})` });
    }
    renderLive();
    renderCharts();
    renderDaily();
    timer = setTimeout(loadHourly, REFRESH_MS);
  }

  document.addEventListener("kefu:view", (event) => {
    if (event.detail.view !== "dashboard") return;
    if (!root) mount();
    renderLive();
    loadHourly();
    document.getElementById("db-title").focus();
  });
  document.addEventListener("kefu:snapshot", renderLive);
  document.addEventListener("kefu:language", () => {
    if (!root) return;
    const shown = !root.hidden;
    mount();
    renderLive();
    renderCharts();
    renderDaily();
    if (shown) loadHourly();
  });
})();
