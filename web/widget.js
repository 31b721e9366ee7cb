/*
 * kefu chat widget: one script tag on any page.
 *
 *   <script src="https://CHAT-HOST/widget.js" data-workspace="demo" async
 *           data-token="(optional) a visitor token your backend got from POST /integrations/visitor-tokens"
 *           data-lang="(optional) zh | en"
 *           data-api="(optional) the REST API's base URL, when not this host's /api"
 *           data-cart-value="(optional) the cart's value, for proactive rules (or kefuWidget.setCart(v))"
 *           data-anonymous="(optional) off: do not offer anonymous consultation in the chat"></script>
 *
 * It adds a launcher button and opens the chat (customer.html from the same host) in an iframe: the host
 * page's styles and scripts cannot reach the conversation, and the chat cannot touch the page. Without
 * data-token the visitor is anonymous; with one, the chat greets them by name and continues their
 * conversation on every channel. On a phone-sized screen the chat fills the screen. Escape closes it.
 *
 * Anonymous consultation (issue 8): the chat offers "chat anonymously" (on its start form, and to a visitor already
 * chatting as themself while no conversation is open). Chosen, the chat gets a fresh anonymous visitor token of its
 * own (a new random customer id, no name) instead of data-token or this widget's visitor, and its conversations
 * are opened anonymous: kefu stores no name, no tags and not the site's customer id for them, and nothing links
 * them to this page's visitor (its experiments, its business events). data-anonymous="off" hides the offer.
 *
 * Proactive invitations: the workspace's rules (GET /workspaces/{ws}/proactive; set by admins) are evaluated
 * here, on the page: time on page, the URL, the cart's value, a returning visitor, exit intent. The first
 * rule whose conditions all hold shows its message next to the launcher (as text), within its caps per
 * visitor and day and per visit (counted in this site's localStorage / sessionStorage). The page can call
 * window.kefuWidget.open(), .close() and .setCart(value).
 *
 * A/B experiments (issue 7): the widget identifies the visitor (data-token, else an anonymous visitor token it
 * keeps in this site's localStorage and renews, so the visitor keeps one customer id across reloads and visits)
 * and asks for the visitor's variants (GET /workspaces/{ws}/experiments/assignments: deterministic per customer
 * id, the winner once rolled out). A proactive_delay variant replaces the time on page of the timed rules; the
 * chat (customer.html, given the same identity) shows a greeting variant. An exposure is reported when a variant
 * takes effect (here: when the clock of a timed invitation starts: GET .../assignments?expose=<experimentId>),
 * once per experiment and visitor.
 *
 * Business events for conversion attribution: kefuWidget.track("order_placed" | "payment_succeeded",
 * {value, currency, eventId}) reports one for this visitor (POST /workspaces/{ws}/events; pass your order id as
 * eventId: a resent event counts once). It returns a promise of the server's answer.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__kefuWidget) return;
  window.__kefuWidget = true;
  var base = new URL(script.src, location.href);
  var workspace = script.dataset.workspace || "";
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(workspace)) {
    if (window.console) console.error("kefu widget: data-workspace is missing or invalid");
    return;
  }
  var zh = (script.dataset.lang || navigator.language || "zh").toLowerCase().indexOf("zh") === 0;
  var label = zh ? "在线客服" : "Chat with us";
  var closeLabel = zh ? "关闭客服窗口" : "Close the chat";
  var dismissLabel = zh ? "关闭邀请" : "Dismiss";

  var style = document.createElement("style");
  style.textContent = [
    ".kefu-launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;border:0;border-radius:999px;",
    "padding:12px 18px;background:#1766d1;color:#fff;font:600 15px/1.2 system-ui,sans-serif;cursor:pointer;",
    "box-shadow:0 6px 20px rgba(16,24,40,.25)}",
    ".kefu-launcher:focus-visible{outline:3px solid #0b3d82;outline-offset:3px}",
    ".kefu-launcher .kefu-dot{display:inline-block;width:9px;height:9px;margin-left:6px;border-radius:50%;background:#f04438}",
    ".kefu-frame{position:fixed;right:20px;bottom:84px;z-index:2147483001;width:380px;height:600px;",
    "max-height:calc(100vh - 104px);border:0;border-radius:16px;background:#fff;box-shadow:0 12px 40px rgba(16,24,40,.3)}",
    "@media (max-width:480px){.kefu-frame{inset:0;width:100%;height:100%;max-height:none;border-radius:0}}",
    ".kefu-invite{position:fixed;right:20px;bottom:78px;z-index:2147483000;max-width:300px;display:flex;gap:6px;",
    "align-items:flex-start;background:#fff;color:#1d2433;border-radius:14px;padding:12px 10px 12px 14px;",
    "font:15px/1.45 system-ui,sans-serif;box-shadow:0 8px 28px rgba(16,24,40,.25)}",
    ".kefu-invite button{font:inherit;border:0;background:none;cursor:pointer;color:#1d2433}",
    ".kefu-invite .kefu-invite-text{text-align:left;padding:0}",
    ".kefu-invite .kefu-invite-close{font-size:18px;line-height:1;padding:0 4px;color:#4b5565}",
    ".kefu-invite button:focus-visible{outline:3px solid #0b3d82;outline-offset:2px}",
  ].join("");
  document.head.appendChild(style);

  var launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "kefu-launcher";
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", "kefu-frame");
  launcher.textContent = label;
  var frame = null;

  function src() {
    var url = new URL("customer.html", base);
    url.searchParams.set("workspace", workspace);
    url.searchParams.set("embed", "1");
    if (script.dataset.lang) url.searchParams.set("lang", script.dataset.lang);
    if (script.dataset.anonymous === "off") url.searchParams.set("anonymous", "off");
    if (script.dataset.token) url.hash = "token=" + encodeURIComponent(script.dataset.token);
    else if (visitor) url.hash = "visitor=" + encodeURIComponent(visitor.token); // the same visitor in the chat
    return url.toString();
  }
  function open() {
    dismiss();
    if (!frame) {
      frame = document.createElement("iframe");
      frame.id = "kefu-frame";
      frame.className = "kefu-frame";
      frame.title = label;
      frame.src = src();
      frame.allow = "clipboard-write";
      document.body.appendChild(frame);
    }
    frame.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    launcher.textContent = closeLabel;
    frame.focus();
  }
  function close() {
    if (frame) frame.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.textContent = label;
    launcher.focus();
  }
  launcher.onclick = function () { return frame && !frame.hidden ? close() : open(); };

  // ---------------------------------------------------------------- proactive invitations
  var api = (script.dataset.api || new URL("api", base).toString()).replace(/\/+$/, "");
  var stateKey = "kefu.proactive." + workspace;
  var state = read(localStorage, stateKey) || { visits: 0, shown: {} };
  var session = read(sessionStorage, stateKey) || { shown: {}, counted: false };
  if (!session.counted) { // one visit per browser session (a reload is the same visit)
    session.returning = state.visits > 0;
    state.visits += 1;
    session.counted = true;
    write(localStorage, stateKey, state);
    write(sessionStorage, stateKey, session);
  }
  var returning = !!session.returning;
  var cartValue = Number(script.dataset.cartValue || 0) || 0;
  var startedAt = Date.now();
  var exited = false;
  var rules = [];
  var invite = null;

  function read(storage, key) {
    try { return JSON.parse(storage.getItem(key) || "null"); } catch (e) { return null; }
  }
  function write(storage, key, value) {
    try { storage.setItem(key, JSON.stringify(value)); } catch (e) { /* storage off: no caps kept */ }
  }
  function today() { return new Date().toISOString().slice(0, 10); }
  function glob(pattern) {
    return new RegExp("^" + pattern.split("*").map(function (p) { return p.replace(/[.+?^${}()|[\]\\]/g, "\\$&"); })
      .join(".*") + "$");
  }
  function holds(rule) {
    var t = rule.trigger || {};
    if (t.timeOnPageSeconds != null && Date.now() - startedAt < t.timeOnPageSeconds * 1000) return false;
    if (t.urlPattern && !glob(t.urlPattern).test(location.href)) return false;
    if (t.minCartValue != null && cartValue < t.minCartValue) return false;
    if (t.returningVisitor != null && t.returningVisitor !== returning) return false;
    if (t.exitIntent && !exited) return false;
    return capsAllow(rule);
  }
  function capsAllow(rule) {
    var day = state.shown[rule.id] || {};
    if (day.day === today() && day.count >= (rule.maxPerDay || 1)) return false;
    if ((session.shown[rule.id] || 0) >= (rule.maxPerSession || 1)) return false;
    return true;
  }
  function evaluate() {
    if (invite || (frame && !frame.hidden)) return;
    for (var i = 0; i < rules.length; i++) {
      if (holds(rules[i])) return show(rules[i]);
    }
  }
  function show(rule) {
    var day = state.shown[rule.id] || {};
    state.shown[rule.id] = { day: today(), count: day.day === today() ? day.count + 1 : 1 };
    session.shown[rule.id] = (session.shown[rule.id] || 0) + 1;
    write(localStorage, stateKey, state);
    write(sessionStorage, stateKey, session);
    invite = document.createElement("div");
    invite.className = "kefu-invite";
    invite.setAttribute("role", "status");
    invite.dataset.rule = rule.id;
    var text = document.createElement("button");
    text.type = "button";
    text.className = "kefu-invite-text";
    text.textContent = rule.message; // text, never HTML
    text.onclick = function () { dismiss(); open(); };
    var x = document.createElement("button");
    x.type = "button";
    x.className = "kefu-invite-close";
    x.setAttribute("aria-label", dismissLabel);
    x.textContent = "×";
    x.onclick = dismiss;
    invite.appendChild(text);
    invite.appendChild(x);
    document.body.appendChild(invite);
  }
  function dismiss() {
    if (invite) invite.remove();
    invite = null;
  }
  document.addEventListener("mouseout", function (e) { // exit intent: the pointer leaves through the top
    if (!e.relatedTarget && e.clientY <= 0 && !exited) {
      exited = true;
      evaluate();
    }
  });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && invite) dismiss(); });
  // ---------------------------------------------------------------- the visitor and their experiment variants
  var wsUrl = api + "/workspaces/" + encodeURIComponent(workspace);
  var visitorKey = "kefu.visitor." + workspace;
  var visitor = null; // {token, customerId, expiresAt}
  function claimsOf(token) {
    try {
      var part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      var bin = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
      return JSON.parse(decodeURIComponent(Array.prototype.map.call(bin, function (ch) {
        return "%" + ("0" + ch.charCodeAt(0).toString(16)).slice(-2);
      }).join("")));
    } catch (e) { return null; }
  }
  function mint(held) { // a fresh anonymous visitor, or a renewal of the one held (same customer id)
    var headers = { "Content-Type": "application/json" };
    if (held) headers.Authorization = "Bearer " + held;
    return fetch(wsUrl + "/visitor-tokens", { method: "POST", headers: headers, body: "{}" })
      .then(function (r) {
        if (!r.ok) throw Object.assign(new Error("visitor token: HTTP " + r.status), { status: r.status });
        return r.json();
      })
      .then(function (t) {
        var kept = { token: t.token, customerId: t.customerId, expiresAt: Date.now() + t.expiresIn * 1000 };
        write(localStorage, visitorKey, kept);
        return kept;
      });
  }
  var identified = script.dataset.token ? claimsOf(script.dataset.token) : null;
  var who = Promise.resolve(identified
    ? { token: script.dataset.token, customerId: identified.sub, expiresAt: identified.exp * 1000 }
    : (function () {
      var kept = read(localStorage, visitorKey);
      if (!kept || !kept.token || kept.expiresAt < Date.now() + 60000) return mint(null);
      if (kept.expiresAt < Date.now() + 6 * 3600 * 1000) { // renew early: the same visitor on the next visits
        // 401: the token is no longer accepted (the visitor's data was erased: their tokens are revoked): a new visitor
        return mint(kept.token).catch(function (e) { return e.status === 401 ? mint(null) : kept; });
      }
      return kept;
    })()
  ).then(function (v) { visitor = v; return v; });
  who.catch(function () { /* no identity: no experiments, the chat asks for its own token */ });
  function authorized(v) { return { Authorization: "Bearer " + v.token }; }
  var assignments = who.then(function (v) {
    return fetch(wsUrl + "/experiments/assignments", { headers: authorized(v) })
      .then(function (r) {
        if (r.status !== 401 || identified) return r;
        // the kept token is refused (revoked at the visitor's erasure): from now on a new anonymous visitor
        who = mint(null).then(function (fresh) { visitor = fresh; return fresh; });
        return who.then(function (fresh) { return fetch(wsUrl + "/experiments/assignments", { headers: authorized(fresh) }); });
      })
      .then(function (r) { return r.ok ? r.json() : { assignments: [] }; })
      .then(function (body) { return (body && body.assignments) || []; });
  }).catch(function () { return []; });
  var exposedKey = "kefu.exposed." + workspace;
  function expose(assignment) { // once per experiment and visitor (the server counts it once as well)
    if (!assignment || !assignment.running || !visitor) return;
    var done = read(localStorage, exposedKey) || {};
    var mark = assignment.experimentId + ":" + visitor.customerId;
    if (done[mark]) return;
    fetch(wsUrl + "/experiments/assignments?expose=" + encodeURIComponent(assignment.experimentId),
      { headers: authorized(visitor) })
      .then(function (r) {
        if (!r.ok) return;
        done = read(localStorage, exposedKey) || {};
        done[mark] = true;
        write(localStorage, exposedKey, done);
      })
      .catch(function () { /* retried on the next page */ });
  }
  function kindOf(list, kind) {
    for (var i = 0; i < list.length; i++) if (list[i].kind === kind) return list[i];
    return null;
  }

  // the rules and the visitor's variants (at most 3 s: without them, the product's defaults)
  var rulesLoaded = fetch(wsUrl + "/proactive")
    .then(function (r) { return r.ok ? r.json() : { rules: [] }; })
    .then(function (body) { return (body && body.rules) || []; })
    .catch(function () { return []; }); // no rules: the launcher alone
  var variantsLoaded = Promise.race([assignments, new Promise(function (r) { setTimeout(function () { r([]); }, 3000); })]);
  Promise.all([rulesLoaded, variantsLoaded]).then(function (loaded) {
    var delay = kindOf(loaded[1], "proactive_delay");
    rules = loaded[0].map(function (rule) {
      var t = rule.trigger || {};
      if (!delay || t.timeOnPageSeconds == null) return rule;
      var trigger = {};
      Object.keys(t).forEach(function (k) { trigger[k] = t[k]; });
      trigger.timeOnPageSeconds = Number(delay.value) || 0;
      var copy = {};
      Object.keys(rule).forEach(function (k) { copy[k] = rule[k]; });
      copy.trigger = trigger;
      return copy;
    });
    var clockStarted = false;
    rules.forEach(function (rule) {
      var t = rule.trigger || {};
      if (t.timeOnPageSeconds == null) return;
      // the clock of an invitation this visit may still show (URL, caps): the delay variant takes effect
      if (!(t.urlPattern && !glob(t.urlPattern).test(location.href)) && capsAllow(rule)) clockStarted = true;
      setTimeout(evaluate, Math.max(0, startedAt + t.timeOnPageSeconds * 1000 - Date.now()) + 50);
    });
    if (delay && clockStarted) expose(delay);
    evaluate();
  });
  function track(name, details) {
    details = details || {};
    var body = { eventId: details.eventId || ("w-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10)),
                 type: name, value: Number(details.value) || 0 };
    if (details.currency) body.currency = details.currency;
    if (details.at) body.at = details.at;
    return who.then(function (v) {
      return fetch(wsUrl + "/events", { method: "POST", headers: Object.assign({ "Content-Type": "application/json" },
        authorized(v)), body: JSON.stringify(body), keepalive: true });
    }).then(function (r) {
      return r.json().then(function (answer) {
        if (!r.ok) throw Object.assign(new Error((answer.error && answer.error.message) || "HTTP " + r.status),
          { code: answer.error && answer.error.code });
        return answer;
      });
    });
  }
  window.kefuWidget = {
    open: function () { dismiss(); open(); },
    close: close,
    setCart: function (value) { cartValue = Number(value) || 0; evaluate(); },
    track: track,
    experiments: function () { return assignments; },
  };
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && frame && !frame.hidden) close(); });
  // the chat asks to close (its own close button, Escape inside it) or says a reply arrived while closed
  window.addEventListener("message", function (e) {
    if (e.origin !== base.origin || !frame || e.source !== frame.contentWindow || !e.data) return;
    if (e.data.type === "kefu:close") close();
    if (e.data.type === "kefu:unread" && frame.hidden && !launcher.querySelector(".kefu-dot")) {
      var dot = document.createElement("span");
      dot.className = "kefu-dot";
      dot.setAttribute("aria-label", zh ? "有新消息" : "new message");
      dot.setAttribute("role", "img");
      launcher.appendChild(dot);
    }
  });
  (document.body ? Promise.resolve() : new Promise(function (r) { document.addEventListener("DOMContentLoaded", r); }))
    .then(function () { document.body.appendChild(launcher); });
})();
