/*
 * The agent console's A/B experiments view (agent.html, #view-experiments; supervisors and admins): the
 * workspace's experiments (GET /experiments), a form to create one (admins; validated here, the API's 422
 * shown field by field), and one experiment's page: its results per variant (GET /experiments/{id}: visitors
 * exposed, conversions, conversion rate, lift and difference vs. the control with the 95% Wald interval, the
 * p-value of the two-proportion z-test, a verdict) and, for admins, Start, Stop and Roll out winner
 * (POST .../start, .../stop with an optional winner; a 409 reloads the experiment and says so).
 * Drawn on the first `kefu:view` "experiments", redrawn on `kefu:language` and when the role becomes known.
 * Every text that comes from data is set with textContent; every label is in strings-console.js ("ex.*").
 */
(function () {
  "use strict";

  const t = (key, values) => KefuI18n.t(key, values);
  const KINDS = ["greeting", "proactive_delay", "routing_mode", "quick_reply_wording"];
  const ROUTING_MODES = ["bot_first", "human_first"];
  const MIN_VARIANTS = 2, MAX_VARIANTS = 5, MAX_TOTAL_WEIGHT = 10000; // kefu.experiments
  const VARIANT_ID = /^[A-Za-z0-9_.-]{1,32}$/;
  const ALPHA = 0.05; // significance level of the verdict
  const REFRESH_MS = 30000;

  const state = {
    drawn: false,
    items: [], loading: false, listError: "", listMessage: "", listMessageKind: "",
    openId: null, experiment: null, message: "", messageKind: "", updatedAt: null, lastOpened: null,
    form: null, errors: [], serverError: null, formStatus: "", creating: false,
  };
  let root = null;
  let refreshTimer = null;
  let wasAdmin = false;

  // ------------------------------------------------------------ helpers

  const { el } = KefuDom;
  const kc = () => window.kefuConsole;
  const isAdmin = () => kc().role === "admin";
  const errorText = (e) => (e && e.message ? `${e.message} (${e.code || "error"})` : String(e));
  const when = (iso) => KefuDom.when(iso, t("ex.none"));
  const kindLabel = (kind) => (KINDS.includes(kind) ? t(`ex.kind.${kind}`) : kind);
  const statusLabel = (status) => (["draft", "running", "stopped"].includes(status) ? t(`ex.status.${status}`) : status);
  function statusText(e) {
    const s = statusLabel(e.status);
    return e.winner ? `${s} · ${t("ex.rolledOutShort", { variant: e.winner })}` : s;
  }
  function valueText(kind, value) {
    if (value === null || value === undefined) return t("ex.none");
    if (kind === "routing_mode" && ROUTING_MODES.includes(value)) return t(`ex.routing.${value}`);
    if (kind === "proactive_delay") return `${value} s`;
    if (Array.isArray(value)) return value.join(" / ");
    return String(value);
  }
  // numbers: fixed decimals (the same in both languages); signs always shown on differences
  const signed = (x, digits) => `${x > 0 ? "+" : x < 0 ? "-" : "±"}${Math.abs(x).toFixed(digits)}`;
  const percent = (x) => (typeof x === "number" ? `${(x * 100).toFixed(1)}%` : t("ex.none"));
  const points = (x) => t("ex.pp", { value: signed(x * 100, 1) });
  function pValueText(p) {
    if (typeof p !== "number") return t("ex.none");
    return p < 0.001 ? "< 0.001" : p.toFixed(3);
  }
  function verdict(row, control) {
    if (row.control) return { key: "control", text: t("ex.verdict.control") };
    if (!row.exposures || !control || !control.exposures) return { key: "noData", text: t("ex.verdict.noData") };
    if (typeof row.pValue === "number" && row.pValue < ALPHA) {
      return row.difference > 0 ? { key: "better", text: t("ex.verdict.better") } : { key: "worse", text: t("ex.verdict.worse") };
    }
    return { key: "notYet", text: t("ex.verdict.notYet") };
  }

  // ------------------------------------------------------------ the create form (its values live in state.form)

  function blankVariant(kind, i) {
    const value = kind === "routing_mode" ? ROUTING_MODES[i % 2] : "";
    return { id: i === 0 ? "control" : String.fromCharCode(97 + i), weight: "50", value };
  }
  function freshForm() {
    return { name: "", kind: "greeting", windowHours: "24", variants: [blankVariant("greeting", 0), blankVariant("greeting", 1)] };
  }
  const variantName = (i) => t("ex.variantN", { n: i + 1 });

  // [{field: element id, text}] of what is wrong; the body to send when nothing is
  function validate(form) {
    const errors = [];
    const name = form.name.trim();
    if (!name || name.length > 120) errors.push({ field: "ex-name", text: t("ex.err.name") });
    const hours = Number(form.windowHours);
    if (!/^\d+$/.test(String(form.windowHours).trim()) || hours < 1 || hours > 720) {
      errors.push({ field: "ex-window", text: t("ex.err.window") });
    }
    if (form.variants.length < MIN_VARIANTS || form.variants.length > MAX_VARIANTS) {
      errors.push({ field: "ex-add-variant", text: t("ex.err.variantCount") });
    }
    const variants = [];
    const seen = new Set();
    let sum = 0;
    form.variants.forEach((v, i) => {
      const who = variantName(i);
      const id = v.id.trim();
      if (!VARIANT_ID.test(id)) errors.push({ field: `ex-v${i}-id`, text: t("ex.err.id", { variant: who }) });
      else if (seen.has(id)) errors.push({ field: `ex-v${i}-id`, text: t("ex.err.idDup", { variant: who }) });
      seen.add(id);
      const weight = Number(v.weight);
      if (!/^\d+$/.test(String(v.weight).trim()) || weight < 1) {
        errors.push({ field: `ex-v${i}-weight`, text: t("ex.err.weight", { variant: who }) });
      } else {
        sum += weight;
      }
      let value = null;
      if (form.kind === "greeting") {
        value = v.value;
        if (!value.trim() || value.length > 500) errors.push({ field: `ex-v${i}-value`, text: t("ex.err.greeting", { variant: who }) });
      } else if (form.kind === "proactive_delay") {
        value = Number(v.value);
        if (String(v.value).trim() === "" || !Number.isFinite(value) || value < 0 || value > 3600) {
          errors.push({ field: `ex-v${i}-value`, text: t("ex.err.delay", { variant: who }) });
        }
      } else if (form.kind === "routing_mode") {
        value = v.value;
        if (!ROUTING_MODES.includes(value)) errors.push({ field: `ex-v${i}-value`, text: t("ex.err.routing", { variant: who }) });
      } else {
        value = String(v.value).split("\n").map((line) => line.trim()).filter(Boolean);
        if (!value.length || value.length > 10 || value.some((line) => line.length > 200)) {
          errors.push({ field: `ex-v${i}-value`, text: t("ex.err.quick", { variant: who }) });
        }
      }
      variants.push({ id, weight, value });
    });
    if (sum > MAX_TOTAL_WEIGHT) {
      errors.push({ field: "ex-v0-weight", text: t("ex.err.weightSum", { max: MAX_TOTAL_WEIGHT, sum }) });
    }
    const body = { name, kind: form.kind, variants, attributionWindowSeconds: hours * 3600 };
    return { errors, body };
  }

  // the element a problem of the API is about: "body.variants.1.weight" (validation) or "variants[1].value: …"
  function fieldOf(location) {
    const m = /variants(?:\.|\[)(\d+)\]?(?:\.(id|weight|value))?/.exec(location || "");
    if (m) return m[2] ? `ex-v${m[1]}-${m[2]}` : "ex-add-variant";
    if (/\bname\b/.test(location || "")) return "ex-name";
    if (/attributionWindowSeconds/.test(location || "")) return "ex-window";
    if (/\bkind\b/.test(location || "")) return "ex-kind";
    return null;
  }
  function serverProblems(e) {
    if (Array.isArray(e.details) && e.details.length) {
      return e.details.map((d) => ({ field: fieldOf(d.field), text: `${d.field}: ${d.problem}` }));
    }
    return [{ field: fieldOf(e.message), text: e.message }];
  }

  async function create(event) {
    event.preventDefault();
    if (state.creating) return;
    const { errors, body } = validate(state.form);
    state.errors = errors;
    state.serverError = null;
    state.formStatus = "";
    if (errors.length) {
      render("errors");
      return;
    }
    state.creating = true;
    state.formStatus = t("ex.creating");
    render("keep");
    try {
      const created = await kc().api("/experiments", { method: "POST", body: JSON.stringify(body) });
      state.creating = false;
      state.form = freshForm();
      state.formStatus = "";
      state.listMessage = t("ex.created", { name: created.name });
      state.listMessageKind = "ok";
      await loadList();
      openExperiment(created.experimentId, t("ex.created", { name: created.name }));
    } catch (e) {
      state.creating = false;
      state.formStatus = "";
      state.serverError = { code: e.code || `http_${e.status}`, problems: serverProblems(e) };
      render("errors");
    }
  }

  function problemList(problems) {
    return el("ul", {}, ...problems.map((p) => el("li", {},
      p.field ? el("button", { type: "button", className: "link ex-jump", text: p.text,
                                onclick: () => { const f = document.getElementById(p.field); if (f) f.focus(); } })
        : el("span", { text: p.text }))));
  }

  function drawForm() {
    const form = state.form;
    const problems = state.serverError ? state.serverError.problems : state.errors;
    const invalid = new Map();
    for (const p of problems) if (p.field && !invalid.has(p.field)) invalid.set(p.field, p.text);
    // an input with its label; aria-invalid and the problem next to it
    function field(id, labelText, control, help) {
      control.id = id;
      const described = [];
      if (help) described.push(`${id}-help`);
      if (invalid.has(id)) {
        control.setAttribute("aria-invalid", "true");
        described.push(`${id}-error`);
      }
      if (described.length) control.setAttribute("aria-describedby", described.join(" "));
      return el("div", { className: "ex-field" }, el("label", { for: id, text: labelText }), control,
        help ? el("span", { id: `${id}-help`, className: "ex-help", text: help }) : null,
        invalid.has(id) ? el("span", { id: `${id}-error`, className: "ex-field-error", text: invalid.get(id) }) : null);
    }
    const name = el("input", { maxlength: "120", autocomplete: "off", value: form.name,
                               oninput: (e) => { form.name = e.target.value; } });
    const kind = el("select", {});
    for (const k of KINDS) kind.append(el("option", { value: k, text: kindLabel(k) }));
    kind.value = form.kind;
    kind.onchange = () => {
      form.kind = kind.value;
      form.variants = form.variants.map((v, i) => Object.assign({}, v, { value: blankVariant(form.kind, i).value }));
      state.errors = [];
      state.serverError = null;
      render("keep");
    };
    const windowHours = el("input", { type: "number", min: "1", max: "720", step: "1", inputmode: "numeric",
                                      value: form.windowHours, oninput: (e) => { form.windowHours = e.target.value; } });

    const rows = form.variants.map((v, i) => {
      let value;
      if (form.kind === "routing_mode") {
        value = el("select", {});
        for (const m of ROUTING_MODES) value.append(el("option", { value: m, text: t(`ex.routing.${m}`) }));
        value.value = ROUTING_MODES.includes(v.value) ? v.value : ROUTING_MODES[0];
        v.value = value.value;
        value.onchange = () => { v.value = value.value; };
      } else if (form.kind === "quick_reply_wording") {
        value = el("textarea", { rows: "3", maxlength: "2200", oninput: (e) => { v.value = e.target.value; } });
        value.value = v.value;
      } else if (form.kind === "proactive_delay") {
        value = el("input", { type: "number", min: "0", max: "3600", step: "1", inputmode: "numeric", value: v.value,
                              oninput: (e) => { v.value = e.target.value; } });
      } else {
        value = el("input", { maxlength: "500", autocomplete: "off", value: v.value, oninput: (e) => { v.value = e.target.value; } });
      }
      const remove = el("button", { type: "button", className: "secondary small ex-remove", id: `ex-v${i}-remove`,
        text: t("ex.removeVariant", { n: i + 1 }), disabled: form.variants.length <= MIN_VARIANTS,
        onclick: () => {
          form.variants.splice(i, 1);
          state.errors = [];
          state.serverError = null;
          render("add");
        } });
      const legend = i === 0 ? t("ex.variantControl", { n: 1 }) : variantName(i);
      return el("fieldset", { className: "ex-variant" }, el("legend", { text: legend }),
        field(`ex-v${i}-id`, t("ex.variantId"), el("input", { maxlength: "32", autocomplete: "off", value: v.id,
          oninput: (e) => { v.id = e.target.value; } })),
        field(`ex-v${i}-weight`, t("ex.weight"), el("input", { type: "number", min: "1", max: String(MAX_TOTAL_WEIGHT), step: "1",
          inputmode: "numeric", value: v.weight, oninput: (e) => { v.weight = e.target.value; } })),
        field(`ex-v${i}-value`, t(`ex.value.${form.kind}`), value),
        remove);
    });
    const add = el("button", { type: "button", className: "secondary", id: "ex-add-variant", text: t("ex.addVariant"),
      disabled: form.variants.length >= MAX_VARIANTS,
      onclick: () => {
        form.variants.push(blankVariant(form.kind, form.variants.length));
        render("add");
      } });
    if (invalid.has("ex-add-variant")) add.setAttribute("aria-describedby", "ex-add-variant-error");

    let summary = null;
    if (problems.length) {
      const heading = state.serverError ? t("ex.serverRefused", { code: state.serverError.code })
        : t("ex.fixErrors", { n: problems.length });
      summary = el("div", { className: "ex-errors", id: "ex-errors", role: "alert", tabindex: "-1" },
        el("p", { text: heading }), problemList(problems));
    }
    const submit = el("button", { type: "submit", id: "ex-create", text: t("ex.create"), disabled: state.creating });
    return el("section", { className: "ex-new", "aria-labelledby": "ex-new-title" },
      el("h3", { id: "ex-new-title", text: t("ex.new") }),
      summary,
      el("form", { id: "ex-form", novalidate: true, onsubmit: create },
        el("div", { className: "ex-row" },
          field("ex-name", t("ex.name"), name),
          field("ex-kind", t("ex.kind"), kind),
          field("ex-window", t("ex.window"), windowHours, t("ex.windowHelp"))),
        el("h4", { text: t("ex.variants") }),
        ...rows,
        invalid.has("ex-add-variant") ? el("p", { id: "ex-add-variant-error", className: "ex-field-error",
                                                  text: invalid.get("ex-add-variant") }) : null,
        el("div", { className: "ex-form-actions" }, add, submit,
          el("span", { className: "form-status", role: "status", "aria-live": "polite", text: state.formStatus }))));
  }

  // ------------------------------------------------------------ the list

  async function loadList() {
    state.loading = true;
    state.listError = "";
    if (!state.openId) render("keep");
    try {
      const page = await kc().api("/experiments");
      state.items = page.items || [];
    } catch (e) {
      state.listError = t("ex.loadFailed", { message: errorText(e) });
    } finally {
      state.loading = false;
      if (!state.openId) render("keep");
    }
  }

  function drawList(focus) {
    const tbody = el("tbody");
    let focusButton = null;
    for (const e of state.items) {
      const open = el("button", { type: "button", className: "ex-open", id: `ex-open-${e.experimentId}`, text: e.name,
                                  onclick: () => openExperiment(e.experimentId) });
      if (focus === "row" && e.experimentId === state.lastOpened) focusButton = open;
      tbody.append(el("tr", { "data-experiment": e.experimentId, "data-status": e.status },
        el("th", { scope: "row" }, open),
        el("td", { text: kindLabel(e.kind) }),
        el("td", {}, el("span", { className: `ex-status ex-status-${e.status}`, text: statusText(e) })),
        el("td", { text: when(e.startedAt) })));
    }
    const table = el("table", { className: "tk-table ex-table" },
      el("caption", { className: "sr-only", text: t("ex.caption") }),
      el("thead", {}, el("tr", {}, ...["name", "kind", "status", "started"].map(
        (c) => el("th", { scope: "col", text: t(`ex.col.${c}`) })))),
      tbody);
    let status;
    if (state.listError) status = state.listError;
    else if (state.loading && !state.items.length) status = t("ex.loading");
    else if (!state.items.length) status = t("ex.empty");
    else status = t("ex.count", { n: state.items.length });
    const section = el("section", { className: "ex-list", "aria-labelledby": "ex-title" },
      el("h2", { id: "ex-title", tabindex: "-1", text: t("ex.title") }),
      el("p", { className: `tk-list-status${state.listError ? " error" : ""}`, role: "status", "aria-live": "polite", text: status }),
      state.items.length ? table : null,
      isAdmin() ? drawForm() : el("p", { className: "muted ex-admins", text: t("ex.adminsOnly") }));
    root.replaceChildren(section);
    if (focusButton) focusButton.focus();
    else if (focus === "title") section.querySelector("h2").focus();
    else if (focus === "errors") {
      const box = document.getElementById("ex-errors");
      if (box) box.focus();
    } else if (focus === "add") {
      const add = document.getElementById("ex-add-variant");
      if (add && !add.disabled) add.focus();
      else document.getElementById("ex-create").focus();
    }
  }

  // ------------------------------------------------------------ one experiment

  async function openExperiment(id, message) {
    state.openId = id;
    state.lastOpened = id;
    state.experiment = null;
    state.message = message || "";
    state.messageKind = message ? "ok" : "";
    render();
    await reload("heading");
  }

  async function reload(focus) {
    const id = state.openId;
    clearTimeout(refreshTimer);
    try {
      const experiment = await kc().api(`/experiments/${encodeURIComponent(id)}`);
      if (state.openId !== id) return;
      state.experiment = experiment;
      state.updatedAt = new Date();
      state.items = state.items.map((it) => (it.experimentId === id ? Object.assign({}, it, experiment) : it));
    } catch (e) {
      if (state.openId !== id) return;
      state.message = t("ex.error", { message: errorText(e) });
      state.messageKind = "error";
    }
    render(focus);
    scheduleRefresh();
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      if (state.openId && root && !root.hidden && !document.hidden) reload(null);
      else scheduleRefresh();
    }, REFRESH_MS);
  }

  function back() {
    clearTimeout(refreshTimer);
    state.openId = null;
    state.experiment = null;
    state.message = "";
    render("row");
    loadList();
  }

  async function act(path, body, button, done) {
    const before = state.experiment;
    if (button) button.disabled = true;
    setMessage(t("ex.saving"), "");
    try {
      const updated = await kc().api(`/experiments/${encodeURIComponent(before.experimentId)}${path}`,
        { method: "POST", body: body ? JSON.stringify(body) : undefined });
      state.message = done(updated);
      state.messageKind = "ok";
      await reload("message");
    } catch (e) {
      if (e.code === "conflict" || e.status === 409) {
        await reload(null);
        const now = state.experiment || before;
        state.message = t("ex.conflict", { message: e.message, status: statusText(now) });
      } else {
        state.message = t("ex.error", { message: errorText(e) });
      }
      state.messageKind = "error";
      render("message");
    }
  }

  function setMessage(text, kind) {
    state.message = text;
    state.messageKind = kind;
    const p = root && root.querySelector(".ex-message");
    if (p) {
      p.textContent = text;
      p.className = `ex-message form-status${kind ? ` ${kind}` : ""}`;
    }
  }

  function resultsTable(e) {
    const rows = (e.results && e.results.variants) || [];
    const byId = new Map((e.variants || []).map((v) => [v.id, v]));
    const total = (e.variants || []).reduce((s, v) => s + v.weight, 0) || 1;
    const control = rows.find((r) => r.control);
    const cols = ["variant", "value", "traffic", "exposed", "conversions", "rate", "lift", "diff", "p", "verdict"];
    const tbody = el("tbody");
    for (const r of rows) {
      const v = byId.get(r.variantId) || {};
      const verdictOf = verdict(r, control);
      const name = el("th", { scope: "row" }, el("span", { text: r.variantId }));
      if (r.control) name.append(" ", el("span", { className: "ex-tag", text: t("ex.controlTag") }));
      if (e.winner === r.variantId) name.append(" ", el("span", { className: "ex-tag ex-tag-winner", text: t("ex.winner") }));
      const diff = typeof r.difference === "number" && Array.isArray(r.ci95)
        ? t("ex.ci", { diff: points(r.difference), low: signed(r.ci95[0] * 100, 1), high: signed(r.ci95[1] * 100, 1) })
        : t("ex.none");
      tbody.append(el("tr", { "data-variant": r.variantId, "data-verdict": verdictOf.key },
        name,
        el("td", { className: "ex-value", text: valueText(e.kind, v.value) }),
        el("td", { className: "num", text: `${Math.round((100 * (v.weight || 0)) / total)}%` }),
        el("td", { className: "num", "data-col": "exposed", text: String(r.exposures) }),
        el("td", { className: "num", "data-col": "conversions", text: String(r.conversions) }),
        el("td", { className: "num", "data-col": "rate", text: percent(r.conversionRate) }),
        el("td", { className: "num", "data-col": "lift",
                   text: typeof r.lift === "number" ? `${signed(r.lift * 100, 1)}%` : t("ex.none") }),
        el("td", { className: "num", "data-col": "diff", text: diff }),
        el("td", { className: "num", "data-col": "p", text: pValueText(r.pValue) }),
        el("td", { "data-col": "verdict" }, el("span", { className: `ex-verdict ex-verdict-${verdictOf.key}`, text: verdictOf.text }))));
    }
    return el("div", { className: "ex-scroll", role: "region", "aria-labelledby": "ex-results-title", tabindex: "0" },
      el("table", { className: "tk-table ex-results" },
        el("caption", { className: "sr-only", text: t("ex.resultsCaption") }),
        el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { scope: "col", text: t(`ex.col.${c}`) })))),
        tbody));
  }

  // the variant to suggest for a roll-out: a significantly better one, else the best rate, else the control
  function suggestedWinner(e) {
    const rows = (e.results && e.results.variants) || [];
    const control = rows.find((r) => r.control);
    const better = rows.filter((r) => verdict(r, control).key === "better").sort((a, b) => b.difference - a.difference);
    if (better.length) return better[0].variantId;
    const rated = rows.filter((r) => typeof r.conversionRate === "number").sort((a, b) => b.conversionRate - a.conversionRate);
    return rated.length ? rated[0].variantId : (e.variants[0] || {}).id;
  }

  function drawActions(e) {
    if (!isAdmin()) return el("p", { className: "muted ex-admins", text: t("ex.adminsOnly") });
    const box = el("div", { className: "tk-actions ex-actions" });
    if (e.status === "draft") {
      const start = el("button", { type: "button", id: "ex-start", text: t("ex.start") });
      start.onclick = () => {
        if (!confirm(t("ex.confirmStart", { name: e.name }))) return;
        act("/start", null, start, (u) => t("ex.nowStatus", { status: statusText(u) }));
      };
      box.append(el("div", { className: "tk-action" }, start));
    }
    if (e.status === "running") {
      const stop = el("button", { type: "button", id: "ex-stop", className: "secondary", text: t("ex.stop") });
      stop.onclick = () => {
        if (!confirm(t("ex.confirmStop", { name: e.name }))) return;
        act("/stop", {}, stop, (u) => t("ex.nowStatus", { status: statusText(u) }));
      };
      box.append(el("div", { className: "tk-action" }, stop));
    }
    if (e.status !== "draft" && !e.winner) {
      const pick = el("select", { id: "ex-winner" });
      for (const v of e.variants) pick.append(el("option", { value: v.id, text: `${v.id} · ${valueText(e.kind, v.value)}` }));
      pick.value = suggestedWinner(e);
      const roll = el("button", { type: "submit", id: "ex-rollout", text: t("ex.rollOut") });
      box.append(el("form", { className: "tk-action", "aria-label": t("ex.rollOut"),
        onsubmit: (ev) => {
          ev.preventDefault();
          const variant = pick.value;
          if (!confirm(t("ex.confirmRollOut", { name: e.name, variant }))) return;
          act("/stop", { winner: variant }, roll, (u) => t("ex.nowRolledOut", { variant: u.winner }));
        } },
        el("div", {}, el("label", { for: "ex-winner", text: t("ex.rollOutVariant") }), pick), roll));
    }
    if (e.winner) box.append(el("p", { className: "ex-rolled", text: t("ex.rolledOut", { variant: e.winner }) }));
    return box;
  }

  function drawExperiment(focus) {
    const e = state.experiment;
    const message = el("p", { className: `ex-message form-status${state.messageKind ? ` ${state.messageKind}` : ""}`,
                              role: "status", "aria-live": "polite", tabindex: "-1", text: state.message });
    const backButton = el("button", { type: "button", className: "secondary tk-back", id: "ex-back", text: t("ex.back"), onclick: back });
    if (!e) {
      root.replaceChildren(el("section", { className: "ex-detail" }, backButton,
        el("h2", { id: "ex-detail-title", tabindex: "-1", text: t("ex.id", { id: state.openId }) }),
        message, state.messageKind === "error" ? null : el("p", { className: "muted", text: t("ex.loading") })));
      if (focus === "heading") root.querySelector("h2").focus();
      return;
    }
    const fact = (name, value) => [el("dt", { text: t(name) }), el("dd", { text: value })];
    const facts = el("dl", { className: "tk-facts ex-facts" },
      ...fact("ex.col.kind", kindLabel(e.kind)),
      ...fact("ex.col.status", statusLabel(e.status)),
      ...fact("ex.created_at", when(e.createdAt)),
      ...fact("ex.started", when(e.startedAt)),
      ...fact("ex.stopped", when(e.stoppedAt)),
      ...fact("ex.winner", e.winner || t("ex.none")),
      ...fact("ex.window", t("ex.windowHours", { n: Math.round((e.attributionWindowSeconds / 3600) * 100) / 100 })));
    facts.querySelectorAll("dd")[1].setAttribute("id", "ex-status");
    const refresh = el("button", { type: "button", className: "secondary small", id: "ex-refresh", text: t("ex.refresh"),
                                   onclick: () => reload(null) });
    const section = el("section", { className: "ex-detail", "aria-labelledby": "ex-detail-title" },
      backButton,
      el("h2", { id: "ex-detail-title", tabindex: "-1", text: e.name }),
      el("p", { className: "muted tk-id", text: t("ex.id", { id: e.experimentId }) }),
      message,
      facts,
      el("div", { className: "ex-results-head" },
        el("h3", { id: "ex-results-title", text: t("ex.results") }), refresh,
        el("span", { className: "muted ex-updated", text: state.updatedAt
          ? t("ex.updated", { time: state.updatedAt.toLocaleTimeString(KefuI18n.locale) }) : "" })),
      resultsTable(e),
      el("p", { className: "muted ex-method", text: t("ex.method") }),
      el("h3", { text: t("ex.actions") }),
      drawActions(e));
    root.replaceChildren(section);
    if (focus === "heading") section.querySelector("h2").focus();
    else if (focus === "message") message.focus();
  }

  // ------------------------------------------------------------ wiring

  function render(focus) {
    if (!root) return;
    // a redraw keeps the keyboard where it was unless it moves it on purpose
    KefuDom.redraw(root, () => (state.openId ? drawExperiment(focus) : drawList(focus)));
  }

  document.addEventListener("kefu:view", (event) => {
    if (!event.detail || event.detail.view !== "experiments" || !window.kefuConsole) return;
    root = document.getElementById("view-experiments");
    if (!root) return;
    wasAdmin = isAdmin();
    if (!state.drawn) {
      state.drawn = true;
      state.form = freshForm();
    }
    if (state.openId) reload("heading");
    else {
      render("title");
      loadList();
    }
  });
  document.addEventListener("kefu:language", () => render());
  document.addEventListener("kefu:snapshot", () => { // the role is known from the first supervisor's snapshot
    if (!root || !window.kefuConsole || isAdmin() === wasAdmin) return;
    wasAdmin = isAdmin();
    render();
  });
})();
