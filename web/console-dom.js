/*
 * Small DOM helpers the console's views share (console-tickets.js, console-dashboard.js,
 * console-experiments.js): elements built with text (never HTML), dates in the viewer's language, and a
 * redraw that leaves the keyboard focus where it was.
 */
(function () {
  "use strict";

  // el("button", { text: "Go", className: "x", onclick: f, "aria-label": "..." }, child, ...):
  // text is textContent; on* are properties; null / undefined / false attributes are left out; true is "".
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else if (k.startsWith("on")) node[k] = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  // an ISO instant in the viewer's language; `none` when there is none, the raw text when it is not a date
  function when(iso, none) {
    if (!iso) return none;
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(KefuI18n.locale);
  }

  // draw() replaces root's content; the focused control (by id) keeps the focus unless draw moved it on purpose
  function redraw(root, draw) {
    const active = document.activeElement;
    const keep = active && active.id && root.contains(active) ? active.id : null;
    draw();
    if (keep && !root.contains(document.activeElement)) {
      const again = document.getElementById(keep);
      if (again) again.focus();
    }
  }

  window.KefuDom = { el, when, redraw };
})();
