/*
 * The agent console's Settings view (agent.html, #view-settings; admins only): three cards, each loaded with GET and
 * saved with PUT on its own:
 *   - Privacy & data (/privacy): retention in days (1–1830), anonymous consultation, masking of personal data in
 *     customers' messages and who may see the originals (piiRevealRole);
 *   - Satisfaction survey (/survey): the NPS question on or off;
 *   - Customer quick replies (/customer-quick-replies): the chips the customer chat offers (at most 6, an id and
 *     wording in Chinese and / or English of at most 40 characters each), added, removed and reordered here.
 * Each card checks what the server would refuse for its ranges and lengths before sending, shows "saving…", the
 * server's error ({"error": {"code", "message", "details"}}) with the fields it names marked, and "saved".
 * Drawn on the first `kefu:view` "settings", redrawn on `kefu:language`. Every text that comes from data is set
 * with textContent (el); every label is in strings-console.js ("st.*").
 */
(function () {
  "use strict";

  const t = (key, values) => KefuI18n.t(key, values);
  const { el } = KefuDom;
  const kc = () => window.kefuConsole;

  // the server's limits (functions/api/handler.py PrivacySettingsBody, kefu.privacy, kefu.chips)
  const MIN_DAYS = 1, MAX_DAYS = 1830;
  const REVEAL_ROLES = ["agent", "supervisor", "admin"];
  const MAX_CHIPS = 6, MAX_CHIP_TEXT = 40;
  const CHIP_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;
  const CONTROL = /[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]/;
  const LANGS = ["zh", "en"];

  // one card's state: loaded values (form), what is wrong (problems: [{field, text}]), a server refusal's code
  function card() {
    return { form: null, stored: null, loading: false, loadError: null, saving: false, status: "", statusKind: "",
             problems: [], refusedCode: null };
  }
  const state = { drawn: false, privacy: card(), survey: card(), chips: card() };
  const CARDS = {
    privacy: { path: "/privacy", draw: drawPrivacy, fromServer: privacyForm },
    survey: { path: "/survey", draw: drawSurvey, fromServer: (body) => ({ nps: body.nps === true }) },
    chips: { path: "/customer-quick-replies", draw: drawChips, fromServer: chipsForm },
  };
  let root = null;

  // ------------------------------------------------------------ helpers

  function privacyForm(body) {
    return {
      retentionDays: String(body.retentionDays ?? 365),
      anonymous: body.anonymous === true,
      maskPii: body.maskPii === true,
      piiRevealRole: REVEAL_ROLES.includes(body.piiRevealRole) ? body.piiRevealRole : "supervisor",
    };
  }
  function chipsForm(body) {
    return { items: (body.items || []).map((c) => ({ id: c.id || "", zh: (c.text && c.text.zh) || "",
                                                     en: (c.text && c.text.en) || "" })) };
  }

  // the element ids a server problem is about ("body.retentionDays", "items[1].text.en: …", "body.items.1.id")
  function fieldOf(name, where) {
    const s = String(where || "");
    if (name === "privacy") {
      if (/retentionDays/.test(s)) return "st-retention";
      if (/maskPii/.test(s)) return "st-mask";
      if (/piiRevealRole/.test(s)) return "st-reveal";
      if (/anonymous/.test(s)) return "st-anonymous";
    } else if (name === "survey") {
      if (/\bnps\b/.test(s)) return "st-nps";
    } else {
      const m = /items(?:\.|\[)(\d+)\]?(?:\.(id|text)(?:\.(zh|en))?)?/.exec(s);
      if (m) {
        if (m[2] === "id") return `st-qr${m[1]}-id`;
        if (m[2] === "text") return `st-qr${m[1]}-${m[3] || "zh"}`;
        return `st-qr${m[1]}-id`;
      }
      if (/\bitems\b/.test(s)) return "st-qr-add";
    }
    return null;
  }
  const codeOf = (e) => e.code || (e.status ? `http_${e.status}` : "network_error");
  function serverProblems(name, e) {
    if (Array.isArray(e.details) && e.details.length && e.details.every((d) => d && d.field)) {
      return e.details.map((d) => ({ field: fieldOf(name, d.field), text: `${d.field}: ${d.problem}` }));
    }
    return [{ field: fieldOf(name, e.message), text: e.message || String(e) }];
  }

  function setStatus(name, text, kind) {
    const c = state[name];
    c.status = text;
    c.statusKind = kind || "";
    const p = document.getElementById(`st-${name}-status`);
    if (p) {
      p.textContent = text;
      p.className = `st-status form-status${c.statusKind ? ` ${c.statusKind}` : ""}`;
    }
  }
  // after an edit: "unsaved changes" while the form differs from what the server has (JSON of the form)
  function edited(name) {
    const c = state[name];
    if (c.saving) return;
    if (JSON.stringify(c.form) !== c.stored) setStatus(name, t("st.unsaved"), "");
    else if (c.status === t("st.unsaved")) setStatus(name, "", "");
  }

  // a labelled control, its help, aria-invalid and its problem next to it
  function field(name, id, labelText, control, help, className) {
    const invalid = state[name].problems.find((p) => p.field === id);
    control.id = id;
    const described = [];
    if (help) described.push(`${id}-help`);
    if (invalid) {
      control.setAttribute("aria-invalid", "true");
      described.push(`${id}-error`);
    }
    const given = control.getAttribute("aria-describedby");
    if (given) described.unshift(given);
    if (described.length) control.setAttribute("aria-describedby", described.join(" "));
    return el("div", { className: className || "st-field" }, el("label", { for: id, text: labelText }), control,
      help ? el("span", { id: `${id}-help`, className: "st-help", text: help }) : null,
      invalid ? el("span", { id: `${id}-error`, className: "st-field-error", text: invalid.text }) : null);
  }
  // a checkbox with its label after it
  function check(name, id, labelText, checked, onchange, help) {
    const invalid = state[name].problems.find((p) => p.field === id);
    const box = el("input", { type: "checkbox", id, checked, onchange: (e) => { onchange(e.target.checked); edited(name); } });
    const described = [];
    if (help) described.push(`${id}-help`);
    if (invalid) {
      box.setAttribute("aria-invalid", "true");
      described.push(`${id}-error`);
    }
    if (described.length) box.setAttribute("aria-describedby", described.join(" "));
    return el("div", { className: "st-check" }, box,
      el("div", {}, el("label", { for: id, text: labelText }),
        help ? el("span", { id: `${id}-help`, className: "st-help", text: help }) : null,
        invalid ? el("span", { id: `${id}-error`, className: "st-field-error", text: invalid.text }) : null));
  }

  // the problems box of a card: the client's ("please fix") or the server's refusal, each a link to its field
  function problemsBox(name) {
    const c = state[name];
    if (!c.problems.length) return null;
    const heading = c.refusedCode ? t("st.refused", { code: c.refusedCode }) : t("st.fixErrors", { n: c.problems.length });
    return el("div", { className: "st-errors", id: `st-${name}-errors`, role: "alert", tabindex: "-1" },
      el("p", { text: heading }),
      el("ul", {}, ...c.problems.map((p) => el("li", {},
        p.field ? el("button", { type: "button", className: "link st-jump", text: p.text,
                                 onclick: () => { const f = document.getElementById(p.field); if (f) f.focus(); } })
          : el("span", { text: p.text })))));
  }

  function actions(name, saveLabel) {
    const c = state[name];
    return el("div", { className: "st-actions" },
      // not disabled while saving (the focus would be lost): a second submit is ignored
      el("button", { type: "submit", id: `st-${name}-save`, text: saveLabel, "aria-disabled": c.saving ? "true" : null }),
      el("span", { id: `st-${name}-status`, className: `st-status form-status${c.statusKind ? ` ${c.statusKind}` : ""}`,
                   role: "status", "aria-live": "polite", text: c.status }));
  }

  // ------------------------------------------------------------ load and save (the same for the three cards)

  async function load(name) {
    const c = state[name];
    c.loading = true;
    c.loadError = null;
    render(name);
    try {
      const body = await kc().api(CARDS[name].path, { method: "GET" });
      c.form = CARDS[name].fromServer(body);
      c.stored = JSON.stringify(c.form);
    } catch (e) {
      c.loadError = e;
    }
    c.loading = false;
    render(name);
  }

  async function save(name, event, validate) {
    event.preventDefault();
    const c = state[name];
    if (c.saving) return;
    const { problems, body } = validate(c.form);
    c.problems = problems;
    c.refusedCode = null;
    if (problems.length) {
      c.status = "";
      c.statusKind = "";
      render(name, "errors");
      return;
    }
    c.saving = true;
    c.status = t("st.saving");
    c.statusKind = "";
    render(name);
    const sent = JSON.stringify(c.form);
    try {
      const kept = CARDS[name].fromServer(await kc().api(CARDS[name].path, { method: "PUT", body: JSON.stringify(body) }));
      c.stored = JSON.stringify(kept);
      c.saving = false;
      if (JSON.stringify(c.form) === sent) { // what the server keeps (trimmed, normalised), unless edited meanwhile
        c.form = kept;
        c.status = t("st.saved", { time: new Date().toLocaleTimeString(KefuI18n.locale) });
        c.statusKind = "ok";
      } else {
        c.status = t("st.unsaved");
        c.statusKind = "";
      }
      render(name);
    } catch (e) {
      c.saving = false;
      c.status = t("st.notSaved");
      c.statusKind = "error";
      c.problems = serverProblems(name, e);
      c.refusedCode = codeOf(e);
      render(name, "errors");
    }
  }

  // ------------------------------------------------------------ privacy & data

  function validatePrivacy(form) {
    const problems = [];
    const raw = String(form.retentionDays).trim();
    const days = Number(raw);
    if (!/^\d+$/.test(raw) || days < MIN_DAYS || days > MAX_DAYS) {
      problems.push({ field: "st-retention", text: t("st.err.retention", { min: MIN_DAYS, max: MAX_DAYS }) });
    }
    return { problems, body: { retentionDays: days, anonymous: form.anonymous, maskPii: form.maskPii,
                               piiRevealRole: form.piiRevealRole } };
  }

  function drawPrivacy() {
    const form = state.privacy.form;
    const retention = el("input", { type: "number", min: String(MIN_DAYS), max: String(MAX_DAYS), step: "1",
                                    inputmode: "numeric", value: form.retentionDays,
                                    oninput: (e) => { form.retentionDays = e.target.value; edited("privacy"); } });
    const reveal = el("select", { onchange: (e) => { form.piiRevealRole = e.target.value; edited("privacy"); } });
    for (const r of REVEAL_ROLES) reveal.append(el("option", { value: r, text: t(`st.reveal.${r}`) }));
    reveal.value = form.piiRevealRole;
    return el("form", { id: "st-privacy-form", novalidate: true, onsubmit: (e) => save("privacy", e, validatePrivacy) },
      field("privacy", "st-retention", t("st.retention"), retention, t("st.retentionHelp", { min: MIN_DAYS, max: MAX_DAYS }),
            "st-field st-narrow"),
      check("privacy", "st-anonymous", t("st.anonymous"), form.anonymous, (v) => { form.anonymous = v; }, t("st.anonymousHelp")),
      check("privacy", "st-mask", t("st.maskPii"), form.maskPii, (v) => { form.maskPii = v; }, t("st.maskPiiHelp")),
      field("privacy", "st-reveal", t("st.revealRole"), reveal, t("st.revealRoleHelp"), "st-field st-narrow"),
      actions("privacy", t("st.savePrivacy")));
  }

  // ------------------------------------------------------------ satisfaction survey

  function drawSurvey() {
    const form = state.survey.form;
    return el("form", { id: "st-survey-form", novalidate: true,
                        onsubmit: (e) => save("survey", e, (f) => ({ problems: [], body: { nps: f.nps } })) },
      check("survey", "st-nps", t("st.nps"), form.nps, (v) => { form.nps = v; }, t("st.npsHelp")),
      actions("survey", t("st.saveSurvey")));
  }

  // ------------------------------------------------------------ customer quick replies

  function freeId(items) {
    const taken = new Set(items.map((c) => c.id.trim()));
    for (let n = items.length + 1; ; n++) if (!taken.has(`reply-${n}`)) return `reply-${n}`;
  }

  function validateChips(form) {
    const problems = [];
    const seen = new Set();
    if (form.items.length > MAX_CHIPS) problems.push({ field: "st-qr-add", text: t("st.err.count", { max: MAX_CHIPS }) });
    const items = form.items.map((c, i) => {
      const n = i + 1;
      const id = c.id.trim();
      if (!CHIP_ID.test(id)) problems.push({ field: `st-qr${i}-id`, text: t("st.err.chipId", { n }) });
      else if (seen.has(id)) problems.push({ field: `st-qr${i}-id`, text: t("st.err.chipIdDup", { n }) });
      seen.add(id);
      const text = {};
      for (const lang of LANGS) {
        const value = c[lang].trim();
        if (!value) continue;
        if (value.length > MAX_CHIP_TEXT) {
          problems.push({ field: `st-qr${i}-${lang}`, text: t(`st.err.${lang}Long`, { n, max: MAX_CHIP_TEXT, length: value.length }) });
        } else if (CONTROL.test(value)) {
          problems.push({ field: `st-qr${i}-${lang}`, text: t(`st.err.${lang}Control`, { n }) });
        }
        text[lang] = value;
      }
      if (!Object.keys(text).length) problems.push({ field: `st-qr${i}-zh`, text: t("st.err.chipEmpty", { n }) });
      return { id, text };
    });
    return { problems, body: { items } };
  }

  // a structural change (add, remove, move): the problems named fields by position, so they go
  function changeChips(fn, focusId) {
    fn(state.chips.form.items);
    state.chips.problems = [];
    state.chips.refusedCode = null;
    edited("chips");
    render("chips");
    const target = focusId && document.getElementById(focusId(state.chips.form.items));
    if (target && !target.disabled) target.focus();
    else document.getElementById("st-qr-add").focus();
  }

  function drawChips() {
    const items = state.chips.form.items;
    const rows = items.map((c, i) => {
      const n = i + 1;
      const input = (lang) => el("input", { autocomplete: "off", lang: lang === "zh" ? "zh-CN" : "en", value: c[lang],
                                            oninput: (e) => { c[lang] = e.target.value; edited("chips"); } });
      const up = el("button", { type: "button", className: "secondary small", id: `st-qr${i}-up`, text: "↑",
        "aria-label": t("st.moveUp", { n }), title: t("st.moveUp", { n }), disabled: i === 0,
        onclick: () => changeChips((list) => list.splice(i - 1, 0, ...list.splice(i, 1)),
                                   () => (i - 1 === 0 ? `st-qr${i - 1}-down` : `st-qr${i - 1}-up`)) });
      const down = el("button", { type: "button", className: "secondary small", id: `st-qr${i}-down`, text: "↓",
        "aria-label": t("st.moveDown", { n }), title: t("st.moveDown", { n }), disabled: i === items.length - 1,
        onclick: () => changeChips((list) => list.splice(i + 1, 0, ...list.splice(i, 1)),
                                   (list) => (i + 1 === list.length - 1 ? `st-qr${i + 1}-up` : `st-qr${i + 1}-down`)) });
      const remove = el("button", { type: "button", className: "secondary small st-remove", id: `st-qr${i}-remove`,
        text: t("st.remove"), "aria-label": t("st.removeN", { n }),
        onclick: () => changeChips((list) => list.splice(i, 1),
                                   (list) => (list.length ? `st-qr${Math.min(i, list.length - 1)}-remove` : "st-qr-add")) });
      return el("li", { className: "st-chip" },
        el("fieldset", {}, el("legend", { text: t("st.chipN", { n }) }),
          field("chips", `st-qr${i}-zh`, t("st.chipZh"), input("zh")),
          field("chips", `st-qr${i}-en`, t("st.chipEn"), input("en")),
          field("chips", `st-qr${i}-id`, t("st.chipId"), el("input", { autocomplete: "off", spellcheck: "false", value: c.id,
            oninput: (e) => { c.id = e.target.value; edited("chips"); }, "aria-describedby": "st-qr-rules" })),
          el("div", { className: "st-chip-actions", role: "group", "aria-label": t("st.chipN", { n }) }, up, down, remove)));
    });
    const add = el("button", { type: "button", className: "secondary", id: "st-qr-add", text: t("st.add"),
      disabled: items.length >= MAX_CHIPS,
      onclick: () => changeChips((list) => list.push({ id: freeId(list), zh: "", en: "" }),
                                 (list) => `st-qr${list.length - 1}-zh`) });
    const addProblem = state.chips.problems.find((p) => p.field === "st-qr-add");
    if (addProblem) add.setAttribute("aria-describedby", "st-qr-add-error");
    return el("form", { id: "st-chips-form", novalidate: true, onsubmit: (e) => save("chips", e, validateChips) },
      el("p", { className: "st-help", id: "st-qr-rules",
                text: `${t("st.chipsRules", { max: MAX_CHIPS, chars: MAX_CHIP_TEXT })} ${t("st.chipIdHelp")}` }),
      items.length ? el("ol", { className: "st-chips" }, ...rows) : el("p", { className: "muted", id: "st-qr-empty", text: t("st.chipsEmpty") }),
      addProblem ? el("p", { id: "st-qr-add-error", className: "st-field-error", text: addProblem.text }) : null,
      el("div", { className: "st-add" }, add,
        el("span", { className: "st-help", text: t("st.chipsCount", { n: items.length, max: MAX_CHIPS }) })),
      actions("chips", t("st.saveChips")));
  }

  // ------------------------------------------------------------ the view

  const TITLES = { privacy: ["st.privacy", "st.privacyHint"], survey: ["st.survey", "st.surveyHint"],
                   chips: ["st.chips", "st.chipsHint"] };

  function drawCard(name) {
    const c = state[name];
    let body;
    if (c.loadError) {
      const e = c.loadError;
      body = el("div", { className: "st-errors", role: "alert" },
        el("p", { text: t("st.loadFailed", { message: `${e.message} (${codeOf(e)})` }) }),
        el("button", { type: "button", className: "secondary small", id: `st-${name}-retry`, text: t("st.retry"),
                       onclick: () => load(name) }));
    } else if (!c.form) {
      body = el("p", { className: "muted", role: "status", text: t("st.loading") });
    } else {
      body = el("div", {}, problemsBox(name), CARDS[name].draw());
    }
    const [title, hint] = TITLES[name];
    return [el("h3", { id: `st-${name}-title`, text: t(title) }),
            el("p", { className: "st-hint", id: `st-${name}-hint`, text: t(hint) }),
            body];
  }

  function render(name, focus) {
    if (!root) return;
    if (!name) {
      for (const n of Object.keys(CARDS)) render(n);
      return;
    }
    const section = document.getElementById(`st-${name}`);
    if (!section) return;
    KefuDom.redraw(section, () => section.replaceChildren(...drawCard(name)));
    if (focus === "errors") {
      const box = document.getElementById(`st-${name}-errors`);
      if (box) box.focus();
    }
  }

  function mount() {
    root = document.getElementById("view-settings");
    const isAdmin = kc().role === "admin" || kc().role === null; // null: not known yet (the REST routes decide)
    root.replaceChildren(el("div", { className: "st-view" },
      el("h2", { id: "st-title", tabindex: "-1", text: t("st.title") }),
      isAdmin ? null : el("p", { className: "muted", text: t("st.adminsOnly") }),
      ...Object.keys(CARDS).map((n) => el("section", { className: "st-card", id: `st-${n}`, "aria-labelledby": `st-${n}-title` }))));
    render();
  }

  document.addEventListener("kefu:view", (event) => {
    if (!event.detail || event.detail.view !== "settings" || !window.kefuConsole) return;
    if (!state.drawn) {
      state.drawn = true;
      mount();
      for (const n of Object.keys(CARDS)) load(n);
    }
    const title = document.getElementById("st-title");
    if (title) title.focus();
  });
  document.addEventListener("kefu:language", () => {
    if (!root) return;
    const title = document.getElementById("st-title");
    if (title) title.textContent = t("st.title");
    // the confirmations and progress were in the old language: drop them (errors stay, as the server said them)
    for (const n of Object.keys(CARDS)) if (state[n].statusKind !== "error") { state[n].status = state[n].saving ? t("st.saving") : ""; state[n].statusKind = ""; }
    render();
  });
})();
