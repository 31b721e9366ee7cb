/*
 * The agent console's tickets view (agent.html, #view-tickets): a filtered list with SLA countdowns and
 * one ticket's page (facts, history, comments, status / priority / assignee changes). Drawn on the first
 * `kefu:view` "tickets", redrawn on `kefu:language`. Talks to the REST API through window.kefuConsole.api.
 * Every text that comes from data is set with textContent.
 */
(function () {
  "use strict";

  KefuI18n.add({
    zh: {
      "tk.title": "工单",
      "tk.filters": "筛选工单",
      "tk.filter.status": "状态",
      "tk.filter.priority": "优先级",
      "tk.filter.assignee": "负责人",
      "tk.filter.any": "全部",
      "tk.filter.mine": "分配给我的",
      "tk.filter.all": "所有人",
      "tk.status.open": "待处理", "tk.status.pending": "挂起", "tk.status.resolved": "已解决", "tk.status.closed": "已关闭",
      "tk.priority.low": "低", "tk.priority.normal": "普通", "tk.priority.high": "高", "tk.priority.urgent": "紧急",
      "tk.col.subject": "主题", "tk.col.customer": "客户", "tk.col.priority": "优先级", "tk.col.status": "状态",
      "tk.col.assignee": "负责人", "tk.col.sla": "SLA",
      "tk.caption": "工单列表，最新的在前",
      "tk.loading": "加载中…",
      "tk.empty": "没有符合条件的工单",
      "tk.count": "已显示 {n} 个工单",
      "tk.loadMore": "加载更多",
      "tk.loadFailed": "加载失败：{message}",
      "tk.unassigned": "未分配",
      "tk.none": "—",
      "tk.u.d": "{n} 天", "tk.u.h": "{n} 小时", "tk.u.min": "{n} 分钟", "tk.u.lt1": "不到 1 分钟",
      "tk.sla.left": "剩余 {time}",
      "tk.sla.overdue": "已超时 {time}",
      "tk.sla.stopped": "已停止（{status}）",
      "tk.back": "← 返回工单列表",
      "tk.ticket": "工单 {id}",
      "tk.customer": "客户", "tk.contact": "联系方式", "tk.priority": "优先级", "tk.status": "状态",
      "tk.assignee": "负责人", "tk.group": "分组", "tk.deadline": "SLA 截止", "tk.escalation": "升级级别",
      "tk.created": "创建时间", "tk.source": "来源",
      "tk.description": "描述",
      "tk.noDescription": "（无描述）",
      "tk.actions": "操作",
      "tk.changeStatus": "更改状态",
      "tk.newStatus": "新状态",
      "tk.reason": "重新打开的原因",
      "tk.apply": "应用",
      "tk.changePriority": "更改优先级",
      "tk.newPriority": "新优先级",
      "tk.save": "保存",
      "tk.assignMe": "分配给我",
      "tk.assignedMe": "已分配给您",
      "tk.noMoves": "此状态不能再更改",
      "tk.closedHint": "工单已关闭：重新打开后才能修改优先级或负责人。",
      "tk.conversations": "关联会话",
      "tk.noConversations": "没有关联会话",
      "tk.openConversation": "打开会话 {id}",
      "tk.comments": "评论",
      "tk.noComments": "暂无评论",
      "tk.internalNote": "内部备注",
      "tk.addComment": "添加评论",
      "tk.commentText": "评论内容",
      "tk.internal": "内部备注（客户看不到）",
      "tk.post": "发表",
      "tk.history": "历史记录",
      "tk.saving": "保存中…",
      "tk.saved": "已保存",
      "tk.error": "操作失败：{message}",
      "tk.reloaded": "工单已被修改：{message}。已重新加载最新内容，请再试一次。",
      "tk.ev.created": "创建了工单（来源：{source}，优先级：{priority}）",
      "tk.ev.updated": "修改了 {changes}",
      "tk.ev.status": "把状态从「{from}」改为「{to}」",
      "tk.ev.reason": "原因：{reason}",
      "tk.ev.commented": "添加了评论",
      "tk.ev.note": "添加了内部备注",
      "tk.ev.linked": "关联了会话 {id}",
      "tk.ev.escalated": "SLA 超时，升级到第 {level} 级（优先级：{priority}，分组：{group}）",
      "tk.ev.other": "事件：{type}",
      "tk.ev.system": "系统",
      "tk.field.subject": "主题", "tk.field.description": "描述", "tk.field.priority": "优先级",
      "tk.field.groupId": "分组", "tk.field.assigneeId": "负责人", "tk.field.assigneeName": "负责人姓名",
      "tk.field.deadline": "SLA 截止",
    },
    en: {
      "tk.title": "Tickets",
      "tk.filters": "Filter tickets",
      "tk.filter.status": "Status",
      "tk.filter.priority": "Priority",
      "tk.filter.assignee": "Assignee",
      "tk.filter.any": "All",
      "tk.filter.mine": "Assigned to me",
      "tk.filter.all": "Everyone",
      "tk.status.open": "Open", "tk.status.pending": "Pending", "tk.status.resolved": "Resolved", "tk.status.closed": "Closed",
      "tk.priority.low": "Low", "tk.priority.normal": "Normal", "tk.priority.high": "High", "tk.priority.urgent": "Urgent",
      "tk.col.subject": "Subject", "tk.col.customer": "Customer", "tk.col.priority": "Priority", "tk.col.status": "Status",
      "tk.col.assignee": "Assignee", "tk.col.sla": "SLA",
      "tk.caption": "Tickets, newest first",
      "tk.loading": "Loading…",
      "tk.empty": "No tickets match these filters",
      "tk.count": "{n} tickets shown",
      "tk.loadMore": "Load more",
      "tk.loadFailed": "Could not load: {message}",
      "tk.unassigned": "Unassigned",
      "tk.none": "—",
      "tk.u.d": "{n} d", "tk.u.h": "{n} h", "tk.u.min": "{n} min", "tk.u.lt1": "< 1 min",
      "tk.sla.left": "{time} left",
      "tk.sla.overdue": "overdue {time}",
      "tk.sla.stopped": "stopped ({status})",
      "tk.back": "← Back to tickets",
      "tk.ticket": "Ticket {id}",
      "tk.customer": "Customer", "tk.contact": "Contact", "tk.priority": "Priority", "tk.status": "Status",
      "tk.assignee": "Assignee", "tk.group": "Group", "tk.deadline": "SLA deadline", "tk.escalation": "Escalation level",
      "tk.created": "Created", "tk.source": "Source",
      "tk.description": "Description",
      "tk.noDescription": "(no description)",
      "tk.actions": "Actions",
      "tk.changeStatus": "Change status",
      "tk.newStatus": "New status",
      "tk.reason": "Reason for reopening",
      "tk.apply": "Apply",
      "tk.changePriority": "Change priority",
      "tk.newPriority": "New priority",
      "tk.save": "Save",
      "tk.assignMe": "Assign to me",
      "tk.assignedMe": "Assigned to you",
      "tk.noMoves": "This status cannot change any more",
      "tk.closedHint": "The ticket is closed: reopen it to change its priority or assignee.",
      "tk.conversations": "Linked conversations",
      "tk.noConversations": "No linked conversations",
      "tk.openConversation": "Open conversation {id}",
      "tk.comments": "Comments",
      "tk.noComments": "No comments yet",
      "tk.internalNote": "Internal note",
      "tk.addComment": "Add a comment",
      "tk.commentText": "Comment",
      "tk.internal": "Internal note (customers do not see it)",
      "tk.post": "Post",
      "tk.history": "History",
      "tk.saving": "Saving…",
      "tk.saved": "Saved",
      "tk.error": "Failed: {message}",
      "tk.reloaded": "The ticket had changed: {message}. It has been reloaded; please try again.",
      "tk.ev.created": "created the ticket (source: {source}, priority: {priority})",
      "tk.ev.updated": "changed {changes}",
      "tk.ev.status": "changed the status from “{from}” to “{to}”",
      "tk.ev.reason": "reason: {reason}",
      "tk.ev.commented": "added a comment",
      "tk.ev.note": "added an internal note",
      "tk.ev.linked": "linked conversation {id}",
      "tk.ev.escalated": "SLA missed: escalated to level {level} (priority: {priority}, group: {group})",
      "tk.ev.other": "event: {type}",
      "tk.ev.system": "system",
      "tk.field.subject": "subject", "tk.field.description": "description", "tk.field.priority": "priority",
      "tk.field.groupId": "group", "tk.field.assigneeId": "assignee", "tk.field.assigneeName": "assignee name",
      "tk.field.deadline": "SLA deadline",
    },
  });

  const t = (key, values) => KefuI18n.t(key, values);
  const STATUSES = ["open", "pending", "resolved", "closed"];
  const PRIORITIES = ["low", "normal", "high", "urgent"];
  const ACTIVE = ["open", "pending"]; // the SLA clock runs
  // kefu.tickets.TRANSITIONS: the moves the API allows; back to open from resolved / closed needs a reason
  const TRANSITIONS = { open: ["pending", "resolved", "closed"], pending: ["open", "resolved", "closed"],
                        resolved: ["open", "closed"], closed: ["open"] };
  const REOPEN_FROM = ["resolved", "closed"];
  const PAGE = 25;
  const TICK_MS = 30_000;

  const state = {
    drawn: false,
    filters: { status: "", priority: "", mine: false },
    items: [], nextCursor: null, loading: false, listError: "",
    openId: null, ticket: null, comments: [], message: "", messageKind: "", lastOpened: null,
  };
  let root = null;
  let seq = 0; // the newest list request: older answers are dropped

  // ------------------------------------------------------------ helpers

  const { el } = KefuDom;
  const consoleApi = () => window.kefuConsole;
  const me = () => consoleApi().claims.sub;
  const label = (kind, value) => (value ? t(`tk.${kind}.${value}`) : t("tk.none"));
  const when = (iso) => KefuDom.when(iso, t("tk.none"));
  function duration(ms) {
    const minutes = Math.floor(Math.abs(ms) / 60_000);
    if (minutes < 1) return t("tk.u.lt1");
    const d = Math.floor(minutes / 1440), h = Math.floor((minutes % 1440) / 60), m = minutes % 60;
    const parts = [];
    if (d) parts.push(t("tk.u.d", { n: d }));
    if (h || (d && m)) parts.push(t("tk.u.h", { n: h }));
    if (!d && m) parts.push(t("tk.u.min", { n: m }));
    return parts.join(" ");
  }
  // {text, overdue} of a ticket's SLA clock now
  function sla(ticket) {
    if (!ticket.deadline) return { text: t("tk.none"), overdue: false };
    if (!ACTIVE.includes(ticket.status)) return { text: t("tk.sla.stopped", { status: label("status", ticket.status) }), overdue: false };
    const left = new Date(ticket.deadline).getTime() - Date.now();
    if (left <= 0) return { text: t("tk.sla.overdue", { time: duration(left) }), overdue: true };
    return { text: t("tk.sla.left", { time: duration(left) }), overdue: false };
  }
  function slaNode(ticket) {
    const span = el("span", { className: "tk-sla" });
    span.tkTicket = ticket;
    paintSla(span);
    return span;
  }
  function paintSla(span) {
    const s = sla(span.tkTicket);
    span.textContent = s.text;
    span.classList.toggle("overdue", s.overdue);
    const row = span.closest("tr");
    if (row) row.classList.toggle("tk-overdue", s.overdue);
  }
  function tick() {
    if (root) for (const span of root.querySelectorAll(".tk-sla")) paintSla(span);
  }
  function customerText(ticket) {
    if (!ticket.customer) return t("tk.none");
    return ticket.customer.name ? `${ticket.customer.name} (${ticket.customer.id})` : ticket.customer.id;
  }
  function assigneeText(ticket) {
    if (!ticket.assignee) return t("tk.unassigned");
    return ticket.assignee.name || ticket.assignee.id;
  }
  function errorText(e) {
    return e && e.message ? e.message : String(e);
  }

  // ------------------------------------------------------------ the list

  function query(cursor) {
    const q = new URLSearchParams();
    if (state.filters.status) q.set("status", state.filters.status);
    if (state.filters.priority) q.set("priority", state.filters.priority);
    if (state.filters.mine) q.set("assigneeId", me());
    q.set("limit", String(PAGE));
    if (cursor) q.set("cursor", cursor);
    return `/tickets?${q}`;
  }

  async function loadList(more) {
    const mine = ++seq;
    state.loading = true;
    state.listError = "";
    if (!more) { state.items = []; state.nextCursor = null; }
    if (!state.openId) render();
    try {
      const page = await consoleApi().api(query(more ? state.nextCursor : null));
      if (mine !== seq) return;
      state.items = more ? state.items.concat(page.items || []) : (page.items || []);
      state.nextCursor = page.nextCursor || null;
    } catch (e) {
      if (mine !== seq) return;
      state.listError = t("tk.loadFailed", { message: errorText(e) });
    } finally {
      if (mine === seq) {
        state.loading = false;
        if (!state.openId) render(more ? "more" : null);
      }
    }
  }

  function filterSelect(id, key, options) {
    const select = el("select", { id, name: key });
    for (const [value, text] of options) select.append(el("option", { value, text }));
    select.value = key === "mine" ? (state.filters.mine ? "mine" : "") : state.filters[key];
    select.onchange = () => {
      state.filters[key] = key === "mine" ? select.value === "mine" : select.value;
      loadList(false);
    };
    return select;
  }

  function drawList(focus) {
    const filters = el("form", { className: "tk-filters", "aria-label": t("tk.filters"), onsubmit: (e) => e.preventDefault() },
      el("div", {}, el("label", { for: "tk-f-status", text: t("tk.filter.status") }),
        filterSelect("tk-f-status", "status", [["", t("tk.filter.any")], ...STATUSES.map((s) => [s, label("status", s)])])),
      el("div", {}, el("label", { for: "tk-f-priority", text: t("tk.filter.priority") }),
        filterSelect("tk-f-priority", "priority", [["", t("tk.filter.any")], ...PRIORITIES.map((p) => [p, label("priority", p)])])),
      el("div", {}, el("label", { for: "tk-f-assignee", text: t("tk.filter.assignee") }),
        filterSelect("tk-f-assignee", "mine", [["", t("tk.filter.all")], ["mine", t("tk.filter.mine")]])));

    const tbody = el("tbody");
    let focusButton = null;
    for (const ticket of state.items) {
      const open = el("button", { type: "button", className: "tk-subject", text: ticket.subject,
                                  onclick: () => openTicket(ticket.ticketId) });
      if (ticket.ticketId === state.lastOpened && focus === "row") focusButton = open;
      const row = el("tr", { "data-ticket": ticket.ticketId },
        el("th", { scope: "row" }, open),
        el("td", { text: customerText(ticket) }),
        el("td", {}, el("span", { className: `tk-prio tk-prio-${ticket.priority}`, text: label("priority", ticket.priority) })),
        el("td", { text: label("status", ticket.status) }),
        el("td", { text: assigneeText(ticket) }),
        el("td", {}, slaNode(ticket)));
      tbody.append(row);
      const s = sla(ticket);
      if (s.overdue) row.classList.add("tk-overdue");
    }
    const head = el("tr", {}, ...["subject", "customer", "priority", "status", "assignee", "sla"].map(
      (c) => el("th", { scope: "col", text: t(`tk.col.${c}`) })));
    const table = el("table", { className: "tk-table" },
      el("caption", { className: "sr-only", text: t("tk.caption") }), el("thead", {}, head), tbody);

    let status = "";
    if (state.listError) status = state.listError;
    else if (state.loading) status = t("tk.loading");
    else if (!state.items.length) status = t("tk.empty");
    else status = t("tk.count", { n: state.items.length });
    const more = el("button", { type: "button", className: "secondary tk-more", text: t("tk.loadMore"),
                                onclick: () => loadList(true) });
    more.hidden = !state.nextCursor;
    more.disabled = state.loading;

    const section = el("section", { className: "tk-list", "aria-labelledby": "tk-list-title" },
      el("h2", { id: "tk-list-title", text: t("tk.title") }),
      filters,
      el("p", { className: `tk-list-status${state.listError ? " error" : ""}`, role: "status", "aria-live": "polite", text: status }),
      state.items.length ? table : null,
      more);
    root.replaceChildren(section);
    if (focusButton) focusButton.focus();
    else if (focus === "more") {
      const buttons = tbody.querySelectorAll("button.tk-subject");
      if (more.hidden && buttons.length) buttons[buttons.length - 1].focus();
      else if (!more.hidden) more.focus();
    }
  }

  // ------------------------------------------------------------ one ticket

  async function openTicket(id) {
    state.openId = id;
    state.lastOpened = id;
    state.ticket = null;
    state.comments = [];
    state.message = "";
    render();
    await reloadTicket("heading");
  }

  async function reloadTicket(focus) {
    const id = state.openId;
    try {
      const [ticket, comments] = await Promise.all([
        consoleApi().api(`/tickets/${encodeURIComponent(id)}`),
        consoleApi().api(`/tickets/${encodeURIComponent(id)}/comments`),
      ]);
      if (state.openId !== id) return;
      state.ticket = ticket;
      state.comments = comments.items || [];
      // the list shows the new status / priority / assignee when we go back
      state.items = state.items.map((it) => (it.ticketId === id ? ticket : it));
    } catch (e) {
      if (state.openId !== id) return;
      state.message = t("tk.error", { message: errorText(e) });
      state.messageKind = "error";
    }
    render(focus);
  }

  function back() {
    state.openId = null;
    state.ticket = null;
    render("row");
  }

  // A change (PATCH or status): send the version read; on 409 reload and say so; other errors shown as given.
  async function change(path, method, body, button) {
    const ticket = state.ticket;
    if (button) button.disabled = true;
    setMessage(t("tk.saving"), "");
    try {
      const updated = await consoleApi().api(`/tickets/${encodeURIComponent(ticket.ticketId)}${path}`,
        { method, body: JSON.stringify(Object.assign({}, body, { version: ticket.version })) });
      state.ticket = updated;
      state.items = state.items.map((it) => (it.ticketId === updated.ticketId ? updated : it));
      state.message = t("tk.saved");
      state.messageKind = "ok";
      render("message");
    } catch (e) {
      if (e.code === "conflict" || e.code === "http_409") {
        await reloadTicket(null);
        state.message = t("tk.reloaded", { message: errorText(e) });
        state.messageKind = "error";
        render("message");
      } else {
        state.message = t("tk.error", { message: errorText(e) });
        state.messageKind = "error";
        render("message");
      }
    }
  }

  function setMessage(text, kind) {
    state.message = text;
    state.messageKind = kind;
    const p = root && root.querySelector(".tk-message");
    if (p) {
      p.textContent = text;
      p.className = `tk-message form-status${kind ? ` ${kind}` : ""}`;
    }
  }

  function fact(name, value) {
    return [el("dt", { text: t(`tk.${name}`) }), el("dd", {}, value)];
  }

  function eventText(ev) {
    switch (ev.type) {
      case "created":
        return t("tk.ev.created", { source: ev.source || t("tk.none"), priority: label("priority", ev.priority) });
      case "updated": {
        const parts = Object.entries(ev.changes || {}).filter(([k]) => k !== "assigneeName").map(([k, v]) => {
          let shown = v;
          if (k === "priority") shown = label("priority", v);
          else if (k === "deadline") shown = when(v);
          else if (v === null || v === undefined) shown = t("tk.none");
          return `${t(`tk.field.${k}`)} → ${shown}`;
        });
        return t("tk.ev.updated", { changes: parts.join(", ") });
      }
      case "status": {
        const s = t("tk.ev.status", { from: label("status", ev.from), to: label("status", ev.to) });
        return ev.reason ? `${s} — ${t("tk.ev.reason", { reason: ev.reason })}` : s;
      }
      case "commented":
        return t(ev.internal ? "tk.ev.note" : "tk.ev.commented");
      case "linked":
        return t("tk.ev.linked", { id: ev.conversationId });
      case "escalated":
        return t("tk.ev.escalated", { level: ev.level, priority: label("priority", ev.priority), group: ev.group || t("tk.none") });
      default:
        return t("tk.ev.other", { type: ev.type || "?" });
    }
  }

  function drawTicket(focus) {
    const tk = state.ticket;
    const message = el("p", { className: `tk-message form-status${state.messageKind ? ` ${state.messageKind}` : ""}`,
                              role: "status", "aria-live": "polite", tabindex: "-1", text: state.message });
    const backButton = el("button", { type: "button", className: "secondary tk-back", text: t("tk.back"), onclick: back });
    if (!tk) {
      root.replaceChildren(el("section", { className: "tk-detail" }, backButton,
        el("h2", { id: "tk-detail-title", tabindex: "-1", text: t("tk.ticket", { id: state.openId }) }),
        message, state.message ? null : el("p", { className: "muted", text: t("tk.loading") })));
      return;
    }

    const deadline = el("span", {}, when(tk.deadline), " · ", slaNode(tk));
    const facts = el("dl", { className: "tk-facts" },
      ...fact("customer", customerText(tk)),
      ...fact("contact", tk.contact || t("tk.none")),
      ...fact("priority", el("span", { className: `tk-prio tk-prio-${tk.priority}`, text: label("priority", tk.priority) })),
      ...fact("status", label("status", tk.status)),
      ...fact("assignee", assigneeText(tk)),
      ...fact("group", tk.groupId || t("tk.none")),
      ...fact("deadline", deadline),
      ...fact("escalation", String(tk.escalationLevel || 0)),
      ...fact("created", when(tk.createdAt)),
      ...fact("source", tk.source || t("tk.none")));

    // actions: status (the allowed moves only), priority, assign to me
    const closed = tk.status === "closed";
    const moves = TRANSITIONS[tk.status] || [];
    const statusSelect = el("select", { id: "tk-new-status" });
    for (const s of moves) statusSelect.append(el("option", { value: s, text: label("status", s) }));
    const reasonWrap = el("div", { className: "tk-reason" },
      el("label", { for: "tk-reason", text: t("tk.reason") }), el("input", { id: "tk-reason", maxlength: "1000" }));
    const needsReason = () => REOPEN_FROM.includes(tk.status) && statusSelect.value === "open";
    const syncReason = () => {
      reasonWrap.hidden = !needsReason();
      reasonWrap.querySelector("input").required = needsReason();
    };
    statusSelect.onchange = syncReason;
    const statusButton = el("button", { type: "submit", text: t("tk.apply"), disabled: !moves.length });
    const statusForm = el("form", { className: "tk-action", "aria-labelledby": "tk-status-legend",
      onsubmit: (e) => {
        e.preventDefault();
        const body = { status: statusSelect.value };
        if (needsReason()) body.reason = reasonWrap.querySelector("input").value.trim();
        change("/status", "POST", body, statusButton);
      } },
      el("h4", { id: "tk-status-legend", text: t("tk.changeStatus") }),
      el("div", {}, el("label", { for: "tk-new-status", text: t("tk.newStatus") }), statusSelect),
      reasonWrap, statusButton,
      moves.length ? null : el("p", { className: "muted", text: t("tk.noMoves") }));
    syncReason();

    const prioSelect = el("select", { id: "tk-new-priority", disabled: closed });
    for (const p of PRIORITIES) prioSelect.append(el("option", { value: p, text: label("priority", p) }));
    prioSelect.value = tk.priority;
    const prioButton = el("button", { type: "submit", text: t("tk.save"), disabled: closed });
    const prioForm = el("form", { className: "tk-action", "aria-labelledby": "tk-prio-legend",
      onsubmit: (e) => {
        e.preventDefault();
        if (prioSelect.value !== tk.priority) change("", "PATCH", { priority: prioSelect.value }, prioButton);
      } },
      el("h4", { id: "tk-prio-legend", text: t("tk.changePriority") }),
      el("div", {}, el("label", { for: "tk-new-priority", text: t("tk.newPriority") }), prioSelect), prioButton);

    const mineAlready = tk.assignee && tk.assignee.id === me();
    const assignButton = el("button", { type: "button", className: "secondary tk-assign",
      text: mineAlready ? t("tk.assignedMe") : t("tk.assignMe"), disabled: closed || mineAlready });
    assignButton.onclick = () => change("", "PATCH", { assigneeId: me() }, assignButton);

    const actions = el("div", { className: "tk-actions" }, statusForm, prioForm,
      el("div", { className: "tk-action" }, assignButton));

    // linked conversations
    const convs = el("ul", { className: "plain tk-convs" });
    for (const id of tk.conversations || []) {
      convs.append(el("li", {}, el("button", { type: "button", className: "secondary",
        text: t("tk.openConversation", { id }), onclick: () => consoleApi().openConversation(id) })));
    }
    if (!convs.children.length) convs.append(el("li", { className: "muted", text: t("tk.noConversations") }));

    // comments
    const comments = el("ol", { className: "tk-comments" });
    for (const c of state.comments) {
      const author = c.author ? (c.author.name || c.author.id) : t("tk.ev.system");
      const meta = el("div", { className: "tk-meta" }, el("strong", { text: author }), " · ",
        el("time", { datetime: c.createdAt || "", text: when(c.createdAt) }));
      if (c.internal) meta.append(" ", el("span", { className: "tk-note-badge", text: t("tk.internalNote") }));
      comments.append(el("li", { className: c.internal ? "internal" : "" }, meta,
        el("p", { className: "tk-text", text: c.text })));
    }
    const commentBox = el("textarea", { id: "tk-comment", rows: "3", maxlength: "10000", required: true });
    const internalBox = el("input", { type: "checkbox", id: "tk-internal" });
    const postButton = el("button", { type: "submit", text: t("tk.post") });
    const commentStatus = el("span", { className: "form-status", role: "status", "aria-live": "polite" });
    const commentForm = el("form", { className: "tk-comment-form", "aria-labelledby": "tk-add-comment",
      onsubmit: async (e) => {
        e.preventDefault();
        const text = commentBox.value.trim();
        if (!text) return;
        postButton.disabled = true;
        commentStatus.className = "form-status";
        commentStatus.textContent = t("tk.saving");
        try {
          await consoleApi().api(`/tickets/${encodeURIComponent(tk.ticketId)}/comments`,
            { method: "POST", body: JSON.stringify({ text, internal: internalBox.checked }) });
          state.message = t("tk.saved");
          state.messageKind = "ok";
          await reloadTicket("comment");
        } catch (err) {
          postButton.disabled = false;
          commentStatus.className = "form-status error";
          commentStatus.textContent = t("tk.error", { message: errorText(err) });
        }
      } },
      el("h4", { id: "tk-add-comment", text: t("tk.addComment") }),
      el("label", { for: "tk-comment", text: t("tk.commentText") }), commentBox,
      el("div", { className: "tk-check" }, internalBox, el("label", { for: "tk-internal", text: t("tk.internal") })),
      el("div", { className: "tk-form-actions" }, postButton, commentStatus));

    // history: newest last, as it happened
    const history = el("ol", { className: "tk-history" });
    for (const ev of tk.history || []) {
      const who = ev.by ? (ev.byRole ? `${ev.by} (${ev.byRole})` : ev.by) : t("tk.ev.system");
      history.append(el("li", {},
        el("time", { datetime: ev.at || "", text: when(ev.at) }), " — ",
        el("strong", { text: who }), " ", el("span", { text: eventText(ev) })));
    }

    const section = el("section", { className: "tk-detail", "aria-labelledby": "tk-detail-title" },
      backButton,
      el("h2", { id: "tk-detail-title", tabindex: "-1", text: tk.subject }),
      el("p", { className: "muted tk-id", text: t("tk.ticket", { id: tk.ticketId }) }),
      message,
      facts,
      el("h3", { text: t("tk.description") }),
      el("p", { className: "tk-text tk-description", text: tk.description || t("tk.noDescription") }),
      el("h3", { text: t("tk.actions") }),
      closed ? el("p", { className: "muted", text: t("tk.closedHint") }) : null,
      actions,
      el("h3", { text: t("tk.conversations") }), convs,
      el("h3", { text: t("tk.comments") }),
      state.comments.length ? comments : el("p", { className: "muted", text: t("tk.noComments") }),
      commentForm,
      el("h3", { text: t("tk.history") }), history);
    root.replaceChildren(section);
    if (focus === "heading") section.querySelector("h2").focus();
    else if (focus === "message") message.focus();
    else if (focus === "comment") commentBox.focus();
  }

  // ------------------------------------------------------------ wiring

  function render(focus) {
    if (!root) return;
    // a redraw keeps the keyboard where it was unless it moves it on purpose
    KefuDom.redraw(root, () => (state.openId ? drawTicket(focus) : drawList(focus)));
  }

  document.addEventListener("kefu:view", (event) => {
    if (!event.detail || event.detail.view !== "tickets") return;
    if (state.drawn) return;
    if (!window.kefuConsole) return;
    root = document.getElementById("view-tickets");
    if (!root) return;
    state.drawn = true;
    setInterval(tick, TICK_MS);
    loadList(false);
  });
  document.addEventListener("kefu:language", () => render());
})();
