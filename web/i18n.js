/*
 * kefu UI strings in Chinese and English: follows the browser, switchable, remembered.
 *
 *   KefuI18n.add({ zh: { hello: "你好，{name}" }, en: { hello: "Hello, {name}" } });
 *   KefuI18n.t("hello", { name: "Ann" })
 *   <button data-i18n="send">发送</button>                  textContent
 *   <input data-i18n-placeholder="typeHere" data-i18n-aria-label="message">   attributes
 *   KefuI18n.onChange(() => rerender());                     after a switch
 *
 * The language: ?lang= (the widget passes its data-lang), then the visitor's last choice, then the browser's
 * languages (the first zh* or en*), then Chinese. Values are text, never HTML; {name} placeholders are filled
 * with the given values as text too.
 */
(function (global) {
  "use strict";
  const STORAGE_KEY = "kefu.lang";
  const LANGS = { zh: "zh-CN", en: "en" };
  const NAMES = { zh: "中文", en: "English" };
  const dicts = { zh: {}, en: {} };
  const listeners = [];

  function normalise(value) {
    const v = String(value || "").toLowerCase();
    return v.startsWith("zh") ? "zh" : v.startsWith("en") ? "en" : null;
  }
  function stored() {
    try { return normalise(global.localStorage.getItem(STORAGE_KEY)); } catch (e) { return null; }
  }
  function detect() {
    const asked = normalise(new URLSearchParams(global.location.search).get("lang"));
    if (asked) return asked;
    const chosen = stored();
    if (chosen) return chosen;
    for (const l of global.navigator.languages || [global.navigator.language]) {
      const n = normalise(l);
      if (n) return n;
    }
    return "zh";
  }

  let lang = detect();

  function t(key, values) {
    let s = dicts[lang][key];
    if (s === undefined) s = dicts.zh[key];
    if (s === undefined) return key; // a missing string shows its key: visible in review, never blank
    if (typeof s === "function") return s(values || {});
    return values ? s.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m)) : s;
  }

  const ATTRS = ["placeholder", "aria-label", "title"];
  function apply(root) {
    const scope = root || global.document;
    for (const el of scope.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const attr of ATTRS) {
      for (const el of scope.querySelectorAll(`[data-i18n-${attr}]`)) el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`)));
    }
    for (const el of scope.querySelectorAll("[data-i18n-empty]")) el.dataset.empty = t(el.dataset.i18nEmpty);
    if (!root) global.document.documentElement.lang = LANGS[lang];
  }

  function set(next, remember) {
    const n = normalise(next);
    if (!n) return;
    if (remember !== false) {
      try { global.localStorage.setItem(STORAGE_KEY, n); } catch (e) { /* private mode: this page only */ }
    }
    if (n === lang) return;
    lang = n;
    apply();
    for (const fn of listeners) fn(lang);
  }

  // A button that switches to the other language; it names that language in that language.
  function switcher(button) {
    const render = () => {
      const other = lang === "zh" ? "en" : "zh";
      button.textContent = NAMES[other];
      button.lang = LANGS[other];
      button.setAttribute("aria-label", other === "en" ? "Switch to English" : "切换到中文");
    };
    button.addEventListener("click", () => set(lang === "zh" ? "en" : "zh"));
    listeners.push(render);
    render();
  }

  global.KefuI18n = {
    add(more) {
      for (const l of Object.keys(dicts)) Object.assign(dicts[l], (more && more[l]) || {});
    },
    t, apply, set, switcher,
    onChange(fn) { listeners.push(fn); },
    get lang() { return lang; },
    get locale() { return LANGS[lang]; },
    // for the strings' test: every key present in both languages
    keys() { return { zh: Object.keys(dicts.zh), en: Object.keys(dicts.en) }; },
  };
})(window);
