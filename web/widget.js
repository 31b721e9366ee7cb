/*
 * kefu chat widget: one script tag on any page.
 *
 *   <script src="https://CHAT-HOST/widget.js" data-workspace="demo" async
 *           data-token="(optional) a visitor token your backend got from POST /integrations/visitor-tokens"
 *           data-lang="(optional) zh | en"></script>
 *
 * It adds a launcher button and opens the chat (customer.html from the same host) in an iframe: the host
 * page's styles and scripts cannot reach the conversation, and the chat cannot touch the page. Without
 * data-token the visitor is anonymous; with one, the chat greets them by name and continues their
 * conversation on every channel. On a phone-sized screen the chat fills the screen. Escape closes it.
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
    if (script.dataset.token) url.hash = "token=" + encodeURIComponent(script.dataset.token);
    return url.toString();
  }
  function open() {
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
