/* kefu-client.js: a small WebSocket client for the kefu protocol (docs/protocol.md).
 *
 * No dependencies and no build step; works in browsers and in Node 20+
 * (`node --experimental-websocket`, or pass WebSocketImpl).
 *
 *   const client = new KefuClient({ url: "ws://127.0.0.1:8000/ws", token });
 *   client.onMessage = (message, conversation) => { ... };
 *   client.connect();
 *   client.track(conversationId);            // follow a conversation: synced after every (re)connect
 *   client.send("hello", conversationId);    // customers may omit the id: the server opens one
 *
 * What it guarantees:
 *  - every outgoing message carries a clientMessageId and is in state "sending" until its ack
 *    ("sent", with its seq) or an error frame naming it ("failed"); unacked messages are sent
 *    again with the same clientMessageId after a reconnect (the server deduplicates them);
 *  - messages go out one at a time, the next after the previous one's ack, so a person's
 *    messages get seqs in the order they were typed (the server handles frames concurrently);
 *  - reconnects use exponential backoff with jitter; after each (re)connect every tracked
 *    conversation is synced from the last contiguous seq seen, following hasMore;
 *  - incoming messages are deduplicated by (conversationId, seq); a seq that skips ahead
 *    (a gap) triggers a sync;
 *  - agents ask for their inbox after each (re)connect and follow exactly the conversations it
 *    lists (a reload or a transfer made elsewhere is picked up);
 *  - a "busy" refusal is retried after a short random delay, with the same clientMessageId;
 *  - a "rate_limited" refusal (too many messages at once) keeps the message in the outbox, still "sending":
 *    nothing goes out until frame.retryAfter seconds have passed (also across a reconnect), then it is
 *    sent again with the same clientMessageId, and the rest follow in order; these waits do not count
 *    towards maxAttempts. The item carries retryAt (ms since the epoch) meanwhile, for a "wait" hint;
 *  - every action but typing carries a requestId; the server echoes it on the direct reply or
 *    error, so each reply and error is matched to its request (the `request` argument of the
 *    callbacks below: {requestId, action, conversationId, sentAt, ...}, or null for frames the
 *    server pushes and for replies from an older server that does not echo);
 *  - a conversation that is closed (closed, cancelled) or taken away from this agent (unassigned)
 *    is no longer tracked: it is not synced after a reconnect;
 *  - an `assigned` frame whose history does not reach back to seq 1 (historyComplete false) is
 *    not synced from seq 1: the conversation's `floor` is the seq below which messages are not
 *    loaded, and loadEarlier(id) fetches the 200 before it.
 *
 * Option anonymous (customers): the visitor chose anonymous consultation; each message that opens a conversation
 * carries "anonymous": true (the token must be an anonymous visitor's: a fresh id from POST .../visitor-tokens,
 * no name).
 *
 * Actions besides send/sync/inbox: route(id, {group, language}), cancel(id), closeConversation(id, resolved),
 * offlineForm({conversationId, name, contact, question}), rate(id, seq, helpful) for customers;
 * handoff(id, to, note), presence(status), snapshot(), assign(id, agentId),
 * actOnSuggestion(id, suggestionId, decision, {text, saveAs}) for agents (snapshot and assign: supervisors).
 * Each returns the requestId, or false when the socket is not open.
 *
 * The bot: in a workspace with a knowledge base a new conversation starts with status "bot". Its messages
 * are ordinary messages with sender.role "bot" and message.meta {decision: "answer" | "review" | "handoff",
 * confidence, questionSeq, articleId?, title?, rateable?}; an agent's message sent from a suggestion has
 * meta {suggestion: {articleId, edited}}. message.meta is null when the message has none. A conversation
 * the bot handed to a human for review carries the suggested answer: c.suggestion
 * ({id, articleId, title, answer, confidence, question, questionSeq, lang, createdAt}, or null), set from
 * `assigned` and the inbox, cleared by the suggestion reply (and by a not_found / conflict refusal: it was
 * handled already); c.note is the note of the last `assigned` ("bot: <reason>" when the bot handed over).
 *
 * Events are plain callback properties: onStatus, onMessage(message, conversation, {origin, own}),
 * onOutbox(item), onAck(frame, item, request), onError(frame, item, request), onAssigned(frame, c),
 * onUnassigned(frame, c), onInbox(frame, conversations, request), onRouted(frame, request),
 * onQueue(frame, request), onOffline(frame, request), onClosed(frame, c, request),
 * onCancelled(frame, c, request), onHandoff(frame, request), onPresence(frame, request),
 * onSnapshot(frame, request), onAssign(frame, request), onOfflineForm(frame, request), onCsat(frame, request),
 * onRated(frame, request) (the reply to rate: {conversationId, seq, helpful, handoff}; with handoff true the
 * bot said sorry and the usual routed / queue / offline frames follow or came just before),
 * onSuggestion(frame, c, request) (the reply to actOnSuggestion: {conversationId, suggestionId, decision,
 * seq (the message sent, null for reject), savedArticleId (null unless saved)}; the sent message itself
 * arrives as onMessage), onTyping(frame), onSync(frame, c, request), onFrame(frame).
 * onError also reports requests that got no reply: code "no_reply" (every action a person starts:
 * route, cancel, close, offline_form, handoff, presence, assign, rate, suggestion, and loadEarlier).
 */
(function (root) {
  "use strict";

  const MAX_TEXT_CHARS = 4000; // code points, after trimming (the server strips whitespace)
  const MAX_ATTACHMENTS = 5; // per message
  function formatSize(bytes) {
    if (typeof bytes !== "number") return "";
    return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MB` : bytes >= 1024 ? `${Math.round(bytes / 1024)} KB` : `${bytes} B`;
  }
  const ID_RE = /^[A-Za-z0-9_.:\-]{1,64}$/;
  // handoff to.group: ^[\w.:\-]+$ with Unicode \w as the server's regex engine defines it (letters, marks and
  // digits of any script, connector punctuation such as _), 1-64 characters: 售后, 技术, billing
  const GROUP_RE = /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}.:\-]{1,64}$/u;
  const PAGE = 200; // the server's largest sync page
  // actions a person starts: a lost reply is reported to the page (onError, code "no_reply")
  const PERSON_ACTIONS = new Set(["route", "cancel", "close", "offline_form", "handoff", "presence", "assign",
                                  "rate", "suggestion"]);

  function uuid() {
    const c = root.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    // crypto.randomUUID needs a secure context; getRandomValues does not
    const b = c.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  /** The claims of a kefu token (not verified: only the server can). */
  function decodeToken(token) {
    try {
      const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const bin = root.atob(part + "=".repeat((4 - (part.length % 4)) % 4));
      const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      return null;
    }
  }

  /** Trimmed text and its length in code points, as the server counts them. */
  function checkText(text) {
    const trimmed = String(text == null ? "" : text).trim();
    const length = Array.from(trimmed).length;
    return { text: trimmed, length, ok: length >= 1 && length <= MAX_TEXT_CHARS };
  }

  class KefuClient {
    constructor(options) {
      const o = options || {};
      if (!o.url || !o.token) throw new Error("KefuClient needs url and token");
      this.url = o.url;
      this.apiUrl = o.apiUrl || null; // the REST API (uploads, download links); default: beside the WebSocket
      this.token = o.token;
      const claims = decodeToken(o.token) || {};
      this.role = claims.kind === "agent" ? "agent" : "customer";
      this.userId = claims.sub || null;
      this.workspace = claims.ws || null;
      this.WebSocketImpl = o.WebSocketImpl || root.WebSocket;
      this.backoffBaseMs = o.backoffBaseMs || 500;
      this.backoffMaxMs = o.backoffMaxMs || 30000;
      this.ackTimeoutMs = o.ackTimeoutMs || 15000;
      this.maxAttempts = o.maxAttempts || 5; // sends of one message before it is marked failed
      this.gapDelayMs = o.gapDelayMs == null ? 300 : o.gapDelayMs;
      this.syncLimit = o.syncLimit || 0; // 0: the server's page size (200)
      this.useInbox = o.inbox == null ? this.role === "agent" : !!o.inbox;
      this.keepaliveMs = o.keepaliveMs || 4 * 60 * 1000; // the server closes sockets idle for 10 min
      this.wakeTimeoutMs = o.wakeTimeoutMs || 5000; // see wake()
      this.checkAuth = o.checkAuth || null; // async () => false when the token is no longer accepted
      this.storage = o.storage || null; // localStorage-like: unacked messages survive a reload
      this.storageKey = `kefu.outbox.${this.workspace}.${this.role}.${this.userId}`;
      // anonymous consultation chosen by the visitor: every message that opens a conversation says so (a customer
      // with an anonymous visitor token only: random id, no name; the server refuses it from any other token)
      this.anonymous = this.role === "customer" && !!o.anonymous;
      this.presenceStatus = null; // an agent's presence, as last confirmed by a presence reply

      this.state = "idle";
      this.socket = null;
      this.attempt = 0;
      this.conversations = new Map(); // id -> {id, messages: Map(seq -> message), contiguous, maxSeq, ...}
      this.outbox = []; // {clientMessageId, conversationId, text, state, attempts, error}
      this._inflight = null;
      this._holdUntil = 0; // rate limited: no message goes out before this time (ms since the epoch)
      this._requests = new Map(); // requestId -> {requestId, action, conversationId, sentAt, timer, ...}
      this._requestPrefix = uuid().slice(0, 8);
      this._requestCount = 0;
      this._timers = { reconnect: null, ack: null, keepalive: null, inbox: null, retry: null };
      this._openedAt = 0;
      this._lastSent = 0;
      this._stopped = true;
      this._restoreOutbox();
    }

    // ---------------------------------------------------------------- connection

    connect() {
      this._stopped = false;
      if (this.socket) return;
      clearTimeout(this._timers.reconnect);
      this._setState(this.attempt ? "reconnecting" : "connecting");
      const url = this.url + (this.url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.token);
      let socket;
      try {
        socket = new this.WebSocketImpl(url);
      } catch (e) {
        this._emit("onError", { code: "connect_failed", message: String(e) });
        this._scheduleReconnect();
        return;
      }
      this.socket = socket;
      let opened = false;
      socket.onopen = () => {
        opened = true;
        this._openedAt = Date.now();
        this._setState("open");
        this._afterOpen();
      };
      socket.onmessage = (event) => this._onRaw(event.data);
      let finished = false;
      const finish = (event) => {
        if (finished || this.socket !== socket) return;
        finished = true;
        this.socket = null;
        this._inflight = null;
        clearTimeout(this._timers.ack);
        clearTimeout(this._timers.inbox);
        clearTimeout(this._timers.retry);
        clearInterval(this._timers.keepalive);
        // replies are sent on the connection of the request: those still awaited will not come
        for (const requestId of Array.from(this._requests.keys())) this._requestLost(requestId, "closed");
        if (this._stopped) return this._setState("closed", { code: event.code, reason: event.reason });
        // a connection that lived a while starts the backoff afresh (idle timeout, 2-hour limit)
        if (opened && Date.now() - this._openedAt > 5000) this.attempt = 0;
        if (!opened && this.checkAuth) {
          // a refused handshake (401/403) looks like any network failure to a WebSocket: ask the API
          Promise.resolve(this.checkAuth()).then(
            (ok) => (ok === false ? this._unauthorized() : this._scheduleReconnect(event)),
            () => this._scheduleReconnect(event),
          );
        } else {
          this._scheduleReconnect(event);
        }
      };
      socket.onclose = finish;
      this._abandon = (code, reason) => { // give up on this socket now, without waiting for its close handshake
        try { socket.close(code, reason); } catch (e) { /* already closing */ }
        finish({ code, reason });
      };
      // browsers follow a failed handshake with close (1006); some runtimes only report the error
      socket.onerror = () => {
        if (!opened) setTimeout(() => finish({ code: 1006, reason: "connection failed" }), 50);
      };
    }

    close() {
      this._stopped = true;
      clearTimeout(this._timers.reconnect);
      if (this.socket) this.socket.close(1000, "bye");
      else this._setState("closed");
    }

    /** Skip the remaining backoff (e.g. when the browser comes back online). */
    reconnectNow() {
      if (this._stopped || this.socket) return;
      this.connect();
    }

    /**
     * The tab comes back (visible again, resumed after a freeze, restored from the back-forward cache) or the
     * network does: a socket that died meanwhile may not have said so (no close event on a half-open
     * connection). Probe it with a frame that gets an answer (the inbox, or a sync, which also fetches what
     * was missed); without an answer within wakeTimeoutMs the socket is dropped and a new one connects and
     * syncs. Without a socket: connect now.
     */
    wake() {
      if (this._stopped) return;
      if (!this.socket) return this.reconnectNow();
      const socket = this.socket;
      const probeAt = Date.now();
      const tracked = Array.from(this.conversations.values()).filter((c) => c.tracked);
      if (this.useInbox || !tracked.length) this.inbox();
      for (const c of tracked) this._sync(c, true);
      clearTimeout(this._timers.wake);
      this._timers.wake = setTimeout(() => {
        if (this.socket === socket && !(this._lastReceived >= probeAt)) this._abandon(4002, "no answer after waking");
      }, this.wakeTimeoutMs);
    }

    /** wake() on the browser's signals: visible again, resumed, restored from the bfcache, back online. */
    watchLifecycle(win) {
      const doc = win.document;
      const wake = () => { if (!doc.hidden) this.wake(); };
      doc.addEventListener("visibilitychange", wake);
      doc.addEventListener("resume", wake);
      win.addEventListener("pageshow", (event) => { if (event.persisted) wake(); });
      win.addEventListener("online", wake);
    }

    _scheduleReconnect(event) {
      if (this._stopped) return;
      const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** this.attempt);
      const delayMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2)); // "equal jitter"
      this.attempt += 1;
      this._setState("reconnecting", { attempt: this.attempt, delayMs, code: event && event.code });
      clearTimeout(this._timers.reconnect);
      this._timers.reconnect = setTimeout(() => this.connect(), delayMs);
    }

    _unauthorized() {
      this._stopped = true;
      this._setState("unauthorized");
      this._emit("onError", { type: "error", code: "unauthorized", message: "the token was refused (expired or invalid)" });
    }

    _afterOpen() {
      for (const conversation of this.conversations.values()) {
        clearTimeout(conversation.syncTimer);
        conversation.syncing = false; // a reply lost with the old socket must not block this sync
        conversation.syncAgain = false;
        conversation.loadingEarlier = false;
      }
      if (this.useInbox) {
        // the inbox reply says what to sync; should it not come (an older server), sync what we have
        this.inbox();
        clearTimeout(this._timers.inbox);
        this._timers.inbox = setTimeout(() => this._syncTracked(), this.ackTimeoutMs);
      } else {
        this._syncTracked();
      }
      this._pump();
      clearInterval(this._timers.keepalive);
      this._timers.keepalive = setInterval(() => this._keepalive(), Math.min(this.keepaliveMs, 60000));
    }

    _syncTracked() {
      for (const conversation of this.conversations.values()) {
        if (conversation.tracked) this._sync(conversation, false);
      }
    }

    /** Ask for the caller's open conversations (the reply arrives as onInbox). Returns the requestId, or false. */
    inbox() {
      this._inboxSentAt = Date.now();
      return this._request({ action: "inbox" });
    }

    _keepalive() {
      if (Date.now() - this._lastSent < this.keepaliveMs) return;
      // there is no ping action: a sync of a tracked conversation is the cheapest useful frame; an agent
      // who follows none asks for the inbox (an idle console would be closed, and reconnect, every 10 min)
      const conversation = Array.from(this.conversations.values()).find((c) => c.tracked);
      if (conversation) this._sync(conversation, true);
      else if (this.useInbox) this.inbox();
    }

    _setState(state, detail) {
      this.state = state;
      this._emit("onStatus", Object.assign({ state, attempt: this.attempt }, detail || {}));
    }

    _send(frame) {
      if (!this.socket || this.socket.readyState !== 1) return false;
      this.socket.send(JSON.stringify(frame));
      this._lastSent = Date.now();
      return true;
    }

    /** Send a frame with a fresh requestId, which the reply or error echoes. Returns the requestId, or false. */
    _request(frame, meta) {
      const requestId = `${this._requestPrefix}-${(this._requestCount += 1).toString(36)}`;
      if (!this._send(Object.assign({}, frame, { requestId }))) return false;
      const request = Object.assign({ requestId, action: frame.action, conversationId: frame.conversationId || null,
                                      sentAt: Date.now() }, meta || {});
      request.timer = setTimeout(() => this._requestLost(requestId, "timeout"), this.ackTimeoutMs);
      this._requests.set(requestId, request);
      return requestId;
    }

    /** The request a server frame answers (by its echoed requestId), or null. */
    _takeRequest(frame) {
      // the gateway's own error frame has a requestId of API Gateway's, and no type
      if (!frame.type || typeof frame.requestId !== "string") return null;
      const request = this._requests.get(frame.requestId);
      if (!request) return null;
      this._requests.delete(frame.requestId);
      clearTimeout(request.timer);
      return request;
    }

    /** No reply will come (timeout, or the connection closed): tell the page about the actions a person started. */
    _requestLost(requestId, why) {
      const request = this._requests.get(requestId);
      if (!request) return;
      this._requests.delete(requestId);
      clearTimeout(request.timer);
      if (request.kind === "earlier") {
        const c = this.conversations.get(request.conversationId);
        if (c) c.loadingEarlier = false;
      }
      if (PERSON_ACTIONS.has(request.action) || request.kind === "earlier") {
        const message = why === "closed" ? "the connection closed before the reply came" : "no reply from the server";
        this._emit("onError", { type: "error", code: "no_reply", message, requestId }, null, request);
      }
    }

    // ---------------------------------------------------------------- conversations

    conversation(id) {
      let c = this.conversations.get(id);
      if (!c) {
        c = { id, messages: new Map(), contiguous: 0, maxSeq: 0, tracked: false, status: null,
              syncing: false, syncAgain: false, syncTimer: null, syncRequestId: null, gapTimer: null, customer: null,
              floor: 0, loadingEarlier: false, // floor: messages 1..floor are not loaded (see loadEarlier)
              suggestion: null, note: "" }; // the bot's suggested answer waiting for this agent; the assignment's note
        this.conversations.set(id, c);
      }
      return c;
    }

    /** Follow a conversation: sync it now and after every reconnect. */
    track(id) {
      if (!id || !ID_RE.test(id)) return null;
      const c = this.conversation(id);
      const wasTracked = c.tracked;
      c.tracked = true;
      if (!wasTracked) this.sync(id);
      return c;
    }

    forget(id) {
      const c = this.conversations.get(id);
      if (!c) return;
      clearTimeout(c.syncTimer);
      clearTimeout(c.gapTimer);
      this.conversations.delete(id);
    }

    /** Messages of a conversation in seq order. */
    messages(id) {
      const c = this.conversations.get(id);
      return c ? Array.from(c.messages.values()).sort((a, b) => a.seq - b.seq) : [];
    }

    isMine(message) {
      return !!message && !!message.sender && message.sender.role === this.role && message.sender.id === this.userId;
    }

    sync(id) {
      const c = this.conversations.get(id) || this.conversation(id);
      this._sync(c, false);
    }

    _sync(c, force) {
      if (c.syncing && !force) {
        c.syncAgain = true;
        return;
      }
      const frame = { action: "sync", conversationId: c.id, afterSeq: c.contiguous };
      if (this.syncLimit) frame.limit = this.syncLimit;
      const requestId = this._request(frame);
      if (!requestId) return;
      c.syncing = true;
      c.syncRequestId = requestId;
      clearTimeout(c.syncTimer);
      // a reply can be lost (a failed handler, an older server without requestIds): do not wait forever
      c.syncTimer = setTimeout(() => { c.syncing = false; }, this.ackTimeoutMs);
    }

    /**
     * Load up to `count` (at most 200) messages below the conversation's floor: an agent given a long
     * conversation gets only its latest messages in `assigned`. Sync reads forwards only, so this asks
     * for the page that ends at the floor (seqs have no gaps). Returns the requestId, or false when
     * there is nothing earlier to load, a load is under way, or the socket is not open. The messages
     * arrive as onMessage with origin "earlier", then onSync(frame, c, request) with request.kind "earlier".
     */
    loadEarlier(id, count) {
      const c = this.conversations.get(id);
      if (!c || !(c.floor > 0) || c.loadingEarlier) return false;
      const limit = Math.min(PAGE, Math.max(1, count || PAGE), c.floor);
      const afterSeq = c.floor - limit;
      const requestId = this._request({ action: "sync", conversationId: c.id, afterSeq, limit },
                                      { kind: "earlier", afterSeq, floor: c.floor });
      if (requestId) c.loadingEarlier = true;
      return requestId;
    }

    /** Merge one message (from a message frame, a sync, an assigned history or an ack). */
    _merge(m, origin) {
      if (!m || typeof m.seq !== "number" || !m.conversationId) return false;
      const c = this.conversation(m.conversationId);
      const own = origin === "ack" || this.isMine(m) ? this._takeFromOutbox(m.clientMessageId, m) : null;
      if (c.messages.has(m.seq)) return false; // duplicate (conversationId, seq)
      const message = {
        conversationId: m.conversationId, seq: m.seq, clientMessageId: m.clientMessageId,
        sender: m.sender || { role: this.role, id: this.userId, name: "" },
        text: m.text, createdAt: m.createdAt, state: "sent",
        meta: m.meta && typeof m.meta === "object" ? m.meta : null, // the bot's decision, or the suggestion sent
        channel: typeof m.channel === "string" ? m.channel : "web", // how a customer's message arrived
        masked: m.masked === true, // stored with personal data masked (the workspace's maskPii)
      };
      if (Array.isArray(m.attachments) && m.attachments.length) message.attachments = m.attachments; // files
      c.messages.set(m.seq, message);
      if (m.seq > c.maxSeq) c.maxSeq = m.seq;
      while (c.messages.has(c.contiguous + 1)) c.contiguous += 1;
      while (c.floor > 0 && c.messages.has(c.floor)) c.floor -= 1; // the messages below the floor came anyway
      this._emit("onMessage", message, c, { origin, own: !!own });
      return true;
    }

    _checkGap(c) {
      if (c.maxSeq <= c.contiguous) return;
      clearTimeout(c.gapTimer);
      // wait briefly: the ack of our own message may be about to fill the hole
      c.gapTimer = setTimeout(() => {
        if (c.maxSeq > c.contiguous) this._sync(c, false);
      }, this.gapDelayMs);
    }

    // ---------------------------------------------------------------- outgoing

    /**
     * Queue a message; returns the outbox entry (state "sending"), or throws on invalid text. A customer's
     * message without conversationId opens a conversation when they have none; options {group, language}
     * say what that new conversation needs (ignored otherwise). options.attachments: up to 5 references
     * from uploadAttachment (same conversation); with at least one, text may be empty. options.quickReply: the id
     * of the quick reply (chip) the customer tapped to send this text (the message's meta.quickReply).
     */
    send(text, conversationId, options) {
      const o = options || {};
      const attachments = Array.isArray(o.attachments) ? o.attachments : [];
      if (attachments.length > MAX_ATTACHMENTS) throw new RangeError(`at most ${MAX_ATTACHMENTS} attachments`);
      if (attachments.length && !conversationId) throw new Error("attachments need the conversation of their upload");
      const checked = checkText(text);
      if (!checked.ok && !(attachments.length && checked.length === 0)) {
        throw new RangeError(`text must be 1-${MAX_TEXT_CHARS} characters`);
      }
      if (!conversationId && this.role === "agent") throw new Error("agents must name the conversation");
      const item = { clientMessageId: uuid(), conversationId: conversationId || null, text: checked.text,
                     state: "sending", attempts: 0, error: null, createdAt: new Date().toISOString() };
      if (attachments.length) item.attachments = attachments.slice();
      if (!item.conversationId && o.group) item.group = o.group;
      if (!item.conversationId && o.language) item.language = o.language;
      if (typeof o.quickReply === "string" && o.quickReply) item.quickReply = o.quickReply; // a tapped chip's id
      this.outbox.push(item);
      this._saveOutbox();
      this._emit("onOutbox", item);
      this._pump();
      return item;
    }

    /** Send a failed message again, with the same clientMessageId. */
    retry(clientMessageId) {
      const item = this.outbox.find((i) => i.clientMessageId === clientMessageId);
      if (!item || item.state !== "failed") return null;
      Object.assign(item, { state: "sending", attempts: 0, error: null });
      this._saveOutbox();
      this._emit("onOutbox", item);
      this._pump();
      return item;
    }

    /** Drop a failed message from the outbox. */
    discard(clientMessageId) {
      const index = this.outbox.findIndex((i) => i.clientMessageId === clientMessageId && i.state === "failed");
      if (index < 0) return;
      const [item] = this.outbox.splice(index, 1);
      item.state = "discarded";
      this._emit("onOutbox", item);
    }

    _pump() {
      if (this._inflight || !this.socket || this.socket.readyState !== 1) return;
      const item = this.outbox.find((i) => i.state === "sending");
      if (!item) return;
      const wait = (this._holdUntil || 0) - Date.now();
      if (wait > 0) { // rate limited: nothing goes out before the server said
        clearTimeout(this._timers.retry);
        this._timers.retry = setTimeout(() => this._pump(), wait);
        return;
      }
      if (item.attempts >= this.maxAttempts) {
        this._fail(item, { code: "no_ack", message: "no acknowledgement from the server" });
        return this._pump();
      }
      const frame = { action: "message", clientMessageId: item.clientMessageId, text: item.text };
      if (item.attachments && item.attachments.length) frame.attachments = item.attachments;
      if (item.quickReply) frame.quickReply = item.quickReply; // meta.quickReply (+ experiment, variant)
      if (item.conversationId) frame.conversationId = item.conversationId;
      else {
        if (item.group) frame.group = item.group; // only used when this message opens the conversation
        if (item.language) frame.language = item.language;
        if (this.anonymous) frame.anonymous = true; // the conversation it opens keeps no identity
      }
      item.attempts += 1;
      this._inflight = item;
      // the requestId names the message also in the few errors without its clientMessageId
      this._request(frame, { clientMessageId: item.clientMessageId });
      clearTimeout(this._timers.ack);
      this._timers.ack = setTimeout(() => {
        // no ack: the socket is probably dead; a new connection resends the message
        if (this._inflight === item && this.socket) this.socket.close(4000, "ack timeout");
      }, this.ackTimeoutMs);
    }

    _takeFromOutbox(clientMessageId, m) {
      const index = this.outbox.findIndex((i) => i.clientMessageId === clientMessageId);
      if (index < 0) return null;
      const [item] = this.outbox.splice(index, 1);
      Object.assign(item, { state: "sent", seq: m.seq, conversationId: m.conversationId, error: null });
      delete item.retryAt;
      if (this._inflight === item) {
        this._inflight = null;
        clearTimeout(this._timers.ack);
      }
      this._saveOutbox();
      this._emit("onOutbox", item);
      this._pump();
      return item;
    }

    _fail(item, error) {
      item.state = "failed";
      item.error = error;
      if (this._inflight === item) {
        this._inflight = null;
        clearTimeout(this._timers.ack);
      }
      this._saveOutbox();
      this._emit("onOutbox", item);
    }

    _saveOutbox() {
      if (!this.storage) return;
      try {
        const pending = this.outbox.filter((i) => i.state === "sending")
          .map(({ clientMessageId, conversationId, text, createdAt, group, language, attachments }) =>
            ({ clientMessageId, conversationId, text, createdAt, group, language, attachments }));
        if (pending.length) this.storage.setItem(this.storageKey, JSON.stringify(pending));
        else this.storage.removeItem(this.storageKey);
      } catch (e) { /* storage full or disabled: the outbox stays in memory */ }
    }

    _restoreOutbox() {
      if (!this.storage) return;
      try {
        const saved = JSON.parse(this.storage.getItem(this.storageKey) || "[]");
        for (const s of saved) {
          if (s && ID_RE.test(s.clientMessageId) && (checkText(s.text).ok || (Array.isArray(s.attachments) &&
              s.attachments.length && !checkText(s.text).length))) {
            this.outbox.push(Object.assign({ state: "sending", attempts: 0, error: null }, s));
          }
        }
      } catch (e) { /* ignore a corrupt entry */ }
    }

    typing(conversationId, isTyping) {
      return this._send({ action: "typing", conversationId, typing: isTyping !== false });
    }

    /**
     * Upload a file (a File or Blob; a Blob without a name is sent as "file") into a conversation: an upload
     * ticket over REST (POST /conversations/{id}/attachments), then the file straight to storage with the
     * ticket's presigned POST (FormData). Resolves to the reference to pass in send(text, id, {attachments});
     * rejects with an Error carrying {code, status} (the server's refusal: type or size not accepted, not
     * your conversation; or "upload_failed"). The REST base URL is client.apiUrl when set, otherwise the
     * WebSocket URL's origin + "/api" (the local stack's layout).
     */
    _apiBase() {
      return String(this.apiUrl || this.url.replace(/^ws(s?):/, "http$1:").replace(/\/ws\/?(\?.*)?$/, "/api"))
        .replace(/\/+$/, "");
    }

    /**
     * A short-lived link to one of a conversation's attachments (GET .../attachments/download): resolves to
     * {url, expiresIn, contentType, size}. Links are reused until a minute before they expire.
     */
    async attachmentLink(conversationId, ref) {
      this._links = this._links || new Map();
      const cached = this._links.get(ref.key);
      if (cached && cached.until > Date.now()) return cached.link;
      const query = new URLSearchParams({ key: ref.key, name: ref.name || "" });
      const response = await root.fetch(
        `${this._apiBase()}/conversations/${encodeURIComponent(conversationId)}/attachments/download?${query}`,
        { headers: { Authorization: `Bearer ${this.token}` } });
      const link = await response.json().catch(() => null);
      if (!response.ok || !link || !link.url) {
        const error = (link && link.error) || {};
        throw Object.assign(new Error(error.message || `no link (${response.status})`), { code: error.code || "not_found" });
      }
      this._links.set(ref.key, { link, until: Date.now() + Math.max(0, (link.expiresIn || 0) - 60) * 1000 });
      return link;
    }

    async uploadAttachment(conversationId, file) {
      if (!conversationId) throw new Error("attachments go into an existing conversation");
      if (!file || typeof file.size !== "number") throw new TypeError("uploadAttachment needs a File or Blob");
      const base = this._apiBase();
      const refused = (code, message, status) => Object.assign(new Error(message), { code, status });
      const response = await root.fetch(`${base}/conversations/${encodeURIComponent(conversationId)}/attachments`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.token}` },
        body: JSON.stringify({ name: file.name || "file", contentType: file.type || "application/octet-stream",
                               size: file.size }),
      });
      const ticket = await response.json().catch(() => null);
      if (!response.ok || !ticket || !ticket.url) {
        const error = (ticket && ticket.error) || {};
        throw refused(error.code || "upload_refused", error.message || `no upload ticket (${response.status})`,
                      response.status);
      }
      const form = new FormData();
      for (const [name, value] of Object.entries(ticket.fields || {})) form.append(name, value);
      form.append("file", file); // last: storage ignores fields after the file
      const uploaded = await root.fetch(ticket.url, { method: "POST", body: form });
      if (!uploaded.ok) throw refused("upload_failed", `the upload failed (${uploaded.status})`, uploaded.status);
      return ticket.attachment;
    }

    /**
     * Ask for a human; options {group, language} say what the conversation needs. Returns the requestId, or
     * false. The reply comes as onRouted (an agent has it), onQueue (it waits; also the way to learn the
     * current position after a reconnect) or onOffline (outside business hours); a refusal as onError.
     */
    route(conversationId, options) {
      const o = options || {};
      const frame = { action: "route", conversationId };
      if (o.group) frame.group = o.group;
      if (o.language) frame.language = o.language;
      return this._request(frame);
    }

    /** A customer stops waiting in the queue: the conversation is closed (onCancelled). */
    cancel(conversationId) {
      return this._request({ action: "cancel", conversationId });
    }

    /** End a conversation (customer, its agent, or a supervisor): everyone in it gets onClosed. */
    closeConversation(conversationId, resolved) {
      return this._request({ action: "close", conversationId, resolved: resolved !== false });
    }

    /** A customer leaves a question for later ({conversationId?, name, contact, question}): onOfflineForm. */
    offlineForm(form) {
      const f = form || {};
      const frame = { action: "offline_form", name: f.name, contact: f.contact, question: f.question };
      if (f.conversationId) frame.conversationId = f.conversationId;
      return this._request(frame);
    }

    /**
     * A customer's satisfaction with a closed conversation: score 1–5, an optional comment and, when the
     * `closed` frame's survey.nps asked it, the 0–10 recommendation answer (nps, an integer; null: not
     * answered), once (resending the same rating is harmless). The reply comes as onCsat; refusals as
     * onError (conflict: not closed yet, or already rated otherwise).
     */
    csat(conversationId, score, comment, nps) {
      const frame = { action: "csat", conversationId, score, comment: comment || "" };
      if (Number.isInteger(nps)) frame.nps = nps;
      return this._request(frame);
    }

    /** An agent's presence: "online", "away" or "offline" (onPresence). */
    presence(status) {
      return this._request({ action: "presence", status });
    }

    /** Supervisors: the live queue and agents (onSnapshot; others get onError with code "forbidden"). */
    snapshot() {
      return this._request({ action: "snapshot" });
    }

    /** Supervisors: give a conversation to an agent by hand (onAssign). */
    assign(conversationId, agentId) {
      return this._request({ action: "assign", conversationId, agentId });
    }

    /**
     * Transfer a conversation; to: {agentId} or {group}. Returns the requestId (success comes as
     * onHandoff, a refusal as onError with the same request), or false when not connected.
     */
    handoff(conversationId, to, note) {
      return this._request({ action: "handoff", conversationId, to, note: note || "" });
    }

    /**
     * A customer's verdict on one of the bot's answers (a message whose meta.rateable is true). Returns the
     * requestId, or false. The reply comes as onRated ({seq, helpful, handoff}); rating the same answer the
     * same way again is harmless, the other way is refused (onError, code "conflict").
     */
    rate(conversationId, seq, helpful) {
      return this._request({ action: "rate", conversationId, seq, helpful: !!helpful },
                           { seq, helpful: !!helpful });
    }

    /**
     * An agent's one action on the bot's suggested answer (c.suggestion): decision "send" (as suggested),
     * "edit" (options.text: the edited answer) or "reject" (nothing is sent). options.saveAs "improve" (the
     * suggested article learns the question, and an edit becomes its answer) or "new" (a new article) keeps
     * the answer for next time; not with reject. Returns the requestId, or false. The reply comes as
     * onSuggestion; refusals as onError: not_found (already handled, or not yours), conflict, invalid_frame.
     */
    actOnSuggestion(conversationId, suggestionId, decision, options) {
      const o = options || {};
      const frame = { action: "suggestion", conversationId, suggestionId, decision };
      if (decision === "edit") {
        const checked = checkText(o.text);
        if (!checked.ok) throw new RangeError(`text must be 1-${MAX_TEXT_CHARS} characters`);
        frame.text = checked.text;
      }
      if (o.saveAs && decision !== "reject") frame.saveAs = o.saveAs;
      if (o.clientMessageId) frame.clientMessageId = o.clientMessageId;
      return this._request(frame, { suggestionId, decision, saveAs: frame.saveAs || null });
    }

    // ---------------------------------------------------------------- incoming

    _onRaw(data) {
      this._lastReceived = Date.now();
      let frame;
      try {
        frame = JSON.parse(data);
      } catch (e) {
        return this._emit("onError", { code: "bad_frame", message: "the server sent something that is not JSON" });
      }
      if (!frame || typeof frame !== "object") return;
      this._emit("onFrame", frame);
      const request = this._takeRequest(frame);
      switch (frame.type) {
        case "message": {
          const c = this.conversation(frame.conversationId);
          this._merge(frame, "live");
          this._checkGap(c);
          break;
        }
        case "ack": {
          const item = this.outbox.find((i) => i.clientMessageId === frame.clientMessageId);
          const c = this.conversation(frame.conversationId);
          if (item) {
            const own = { conversationId: frame.conversationId, seq: frame.seq, clientMessageId: frame.clientMessageId,
                          sender: { role: this.role, id: this.userId, name: "" }, text: item.text,
                          createdAt: frame.createdAt };
            if (item.attachments && item.attachments.length) own.attachments = item.attachments;
            this._merge(own, "ack");
          } else if (typeof frame.seq === "number" && !c.messages.has(frame.seq)) {
            c.maxSeq = Math.max(c.maxSeq, frame.seq); // sent by an earlier page: its text comes with a sync
          }
          this._emit("onAck", frame, item || null, request);
          this._checkGap(c);
          break;
        }
        case "sync": {
          const c = this.conversation(frame.conversationId);
          const page = frame.messages || [];
          c.status = frame.status || c.status;
          if (request && request.kind === "earlier") {
            for (const m of page) if (m && m.seq <= request.floor) this._merge(m, "earlier");
            c.floor = Math.min(c.floor, request.afterSeq); // seqs have no gaps: (afterSeq, floor] are here now
            c.loadingEarlier = false;
            this._emit("onSync", frame, c, request);
            break;
          }
          for (const m of page) this._merge(m, "sync");
          // the reply to an older sync while a newer one is out (the keepalive's): keep its messages and
          // let the newer reply decide what comes next
          const current = !c.syncing || !frame.requestId || frame.requestId === c.syncRequestId;
          let more = false;
          if (current) {
            clearTimeout(c.syncTimer);
            c.syncing = false;
            // next page (hasMore), a hole still open, or a sync asked for meanwhile; never repeat a page
            // that brought nothing, so a hole the server cannot fill does not loop
            more = (page.length > 0 && (frame.hasMore || c.maxSeq > c.contiguous)) || c.syncAgain;
            c.syncAgain = false;
          }
          this._emit("onSync", frame, c, request);
          if (more) this._sync(c, false);
          break;
        }
        case "assigned": {
          const c = this.conversation(frame.conversationId);
          c.tracked = true;
          c.assignedAt = Date.now();
          c.customer = frame.customer || null;
          c.status = "assigned";
          c.group = frame.group || null;
          c.priority = frame.priority || 0;
          c.note = frame.note || "";
          c.suggestion = frame.suggestion || null; // the bot's answer for this agent to send, edit or reject
          const history = frame.history || [];
          const first = history.length && typeof history[0].seq === "number" ? history[0].seq : 1;
          if (frame.historyComplete === false && c.contiguous < first - 1) {
            // the latest messages only: what lies below is loaded on demand (loadEarlier), not synced from seq 1
            c.floor = first - 1;
            c.contiguous = c.floor;
          }
          for (const m of history) this._merge(m, "history");
          this._emit("onAssigned", frame, c);
          this._sync(c, false); // messages stored after the history was read
          break;
        }
        case "inbox": {
          clearTimeout(this._timers.inbox);
          const listed = new Set();
          for (const summary of frame.conversations || []) {
            const c = this.conversation(summary.conversationId);
            listed.add(c.id);
            c.tracked = true;
            c.customer = summary.customer || c.customer;
            c.status = summary.status || c.status;
            if ("group" in summary) c.group = summary.group;
            if ("priority" in summary) c.priority = summary.priority;
            if ("suggestion" in summary) c.suggestion = summary.suggestion || null;
            if (summary.lastSeq > c.contiguous || c.contiguous === 0) this._sync(c, false);
          }
          // no longer ours (transferred or closed while we were away): stop following; an "assigned"
          // that arrived after the request may be missing from the reply and is kept
          const askedAt = request ? request.sentAt : this._inboxSentAt || 0;
          for (const c of this.conversations.values()) {
            if (listed.has(c.id)) continue;
            if (c.assignedAt && c.assignedAt >= askedAt) listed.add(c.id);
            else c.tracked = false;
          }
          this._emit("onInbox", frame, Array.from(listed, (id) => this.conversations.get(id)), request);
          break;
        }
        case "routed":
          // the reply to route (request set), or pushed when a new conversation was routed automatically
          this.conversation(frame.conversationId).status = frame.status;
          this._emit("onRouted", frame, request);
          break;
        case "queue":
          // waiting for an agent: pushed on entering the queue and when the place changes, or the reply to route
          this.conversation(frame.conversationId).status = "queued";
          this._emit("onQueue", frame, request);
          break;
        case "offline":
          // nobody can answer now: closed_hours (not queued) or no_agents_online (queued); offers the form
          this._emit("onOffline", frame, request);
          break;
        case "closed":
        case "cancelled": {
          // ended (pushed to everyone in it, and the reply to close / cancel): not synced any more
          const c = this.conversation(frame.conversationId);
          c.status = "closed";
          c.tracked = false;
          this._emit(frame.type === "closed" ? "onClosed" : "onCancelled", frame, c, request);
          break;
        }
        case "unassigned": {
          // transferred away, or given back to routing: no longer ours, and no longer readable
          const c = this.conversation(frame.conversationId);
          c.tracked = false;
          c.assignedAt = 0;
          clearTimeout(c.syncTimer);
          clearTimeout(c.gapTimer);
          this._emit("onUnassigned", frame, c);
          break;
        }
        case "handoff":
          this._emit("onHandoff", frame, request);
          break;
        case "presence":
          this.presenceStatus = frame.status;
          this._emit("onPresence", frame, request);
          break;
        case "snapshot":
          this._emit("onSnapshot", frame, request);
          break;
        case "assign":
          this._emit("onAssign", frame, request);
          break;
        case "csat":
          this._emit("onCsat", frame, request);
          break;
        case "offline_form":
          this._emit("onOfflineForm", frame, request);
          break;
        case "rated":
          // the reply to rate; with handoff true the bot handed the conversation to a human
          this._emit("onRated", frame, request);
          break;
        case "suggestion": {
          // the reply to actOnSuggestion: the suggestion is used up (the sent message comes as a message frame)
          const c = this.conversation(frame.conversationId);
          if (c.suggestion && c.suggestion.id === frame.suggestionId) c.suggestion = null;
          this._emit("onSuggestion", frame, c, request);
          break;
        }
        case "typing":
          this._emit("onTyping", frame);
          break;
        case "typing.ok":
          break;
        case "error":
          this._onError(frame, request);
          break;
        default:
          if (frame.message === "Internal server error") {
            // the gateway's own frame: some handler failed, we cannot tell which request
            this._retryInflight();
            this._emit("onError", { type: "error", code: "internal_error", message: frame.message, requestId: frame.requestId });
          }
      }
    }

    _onError(frame, request) {
      // a message's refusals name it by clientMessageId; its requestId also names it in the few errors
      // without one (busy while routing a new conversation, internal_error)
      const cmid = frame.clientMessageId || (request && request.clientMessageId);
      const item = (cmid && this.outbox.find((i) => i.clientMessageId === cmid)) || null;
      if (item && (frame.code === "busy" || frame.code === "internal_error")) {
        if (this._inflight === item) this._retryInflight(); // retryable: same clientMessageId, a bit later
        return this._emit("onError", frame, item, request);
      }
      if (item && frame.code === "rate_limited") {
        // not stored: it stays in the outbox and goes again after retryAfter (the next ones wait behind it)
        const seconds = Number(frame.retryAfter);
        const delayMs = 1000 * (Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds, 3600) : 1);
        this._holdUntil = Math.max(this._holdUntil || 0, Date.now() + delayMs + Math.random() * 250);
        item.retryAt = this._holdUntil;
        if (item.attempts > 0) item.attempts -= 1; // waiting as told is not a failed attempt
        if (this._inflight === item) {
          this._inflight = null;
          clearTimeout(this._timers.ack);
        }
        this._emit("onOutbox", item);
        this._pump(); // schedules the resend
        return this._emit("onError", frame, item, request);
      }
      if (item) {
        this._fail(item, frame); // refused: waits for retry() or discard()
        this._pump();
      } else if (request && request.action === "sync") {
        const c = this.conversations.get(request.conversationId);
        if (c && request.kind === "earlier") c.loadingEarlier = false;
        else if (c && c.syncRequestId === request.requestId) {
          clearTimeout(c.syncTimer); // answered: the next sync need not wait for the timeout
          c.syncing = false;
        }
      } else if (request && request.action === "suggestion" && (frame.code === "not_found" || frame.code === "conflict")) {
        // handled already (another tab, a lost reply) or no longer ours: it waits no more
        const c = this.conversations.get(request.conversationId);
        if (c && c.suggestion && c.suggestion.id === request.suggestionId) c.suggestion = null;
      } else if (!request && frame.code === "internal_error") {
        this._retryInflight(); // an error we cannot match (an older server): a resend is harmless
      }
      this._emit("onError", frame, item, request);
    }

    _retryInflight() {
      if (!this._inflight) return;
      this._inflight = null;
      clearTimeout(this._timers.ack);
      clearTimeout(this._timers.retry);
      this._timers.retry = setTimeout(() => this._pump(), 500 + Math.random() * 1500);
    }

    _emit(name, ...args) {
      const fn = this[name];
      if (typeof fn !== "function") return;
      try {
        fn.apply(this, args);
      } catch (e) {
        if (root.console) root.console.error(`kefu: ${name} handler failed`, e);
      }
    }
  }

  KefuClient.decodeToken = decodeToken;
  KefuClient.checkText = checkText;
  KefuClient.isId = (value) => typeof value === "string" && ID_RE.test(value);
  KefuClient.isGroup = (value) => typeof value === "string" && GROUP_RE.test(value);
  KefuClient.uuid = uuid;
  KefuClient.MAX_TEXT_CHARS = MAX_TEXT_CHARS;
  KefuClient.MAX_ATTACHMENTS = MAX_ATTACHMENTS;
  KefuClient.formatSize = formatSize;

  /** Where the API and the WebSocket live: <meta name="kefu-api"> / <meta name="kefu-ws">, else this origin. */
  KefuClient.endpoints = function (doc, loc) {
    const meta = (name) => {
      const el = doc && doc.querySelector(`meta[name="${name}"]`);
      return el && el.content ? el.content.replace(/\/+$/, "") : "";
    };
    const wsScheme = loc.protocol === "https:" ? "wss:" : "ws:";
    return { api: meta("kefu-api") || `${loc.origin}/api`, ws: meta("kefu-ws") || `${wsScheme}//${loc.host}/ws` };
  };

  /**
   * Optional DOM helper: renders one conversation into a list element (an <ol role="log">).
   * All user text goes in with textContent, never as HTML. The bot's messages get the classes
   * "msg theirs bot" and a "🤖 <name> · <labels.bot>" sender label. decorate(li, message), when set, is
   * called after a message (not a pending outbox item) is rendered, to add to it (rating buttons, notes);
   * refresh(seq) renders one message again (and so decorates it again).
   */
  class MessageList {
    constructor(list, client, labels) {
      this.list = list;
      this.client = client;
      // read at each drawing (not copied): labels may be getters that follow the page's language
      const defaults = { me: "Me", sending: "Sending…", sent: "Sent", failed: "Not sent",
                         retry: "Retry", discard: "Discard", bot: "Automated" };
      this.labels = new Proxy(labels || {}, { get: (given, key) => (given[key] !== undefined ? given[key] : defaults[key]) });
      this.decorate = null;
      this.conversationId = null;
      this.bySeq = new Map();
      this.byCmid = new Map(); // own messages not yet placed by seq
    }

    /** Show a conversation (null: a customer's conversation that does not exist yet). */
    show(conversationId) {
      this.conversationId = conversationId || null;
      this.list.replaceChildren();
      this.bySeq.clear();
      this.byCmid.clear();
      if (this.conversationId) for (const m of this.client.messages(this.conversationId)) this.message(m);
      for (const item of this.client.outbox) this.outbox(item);
      this._scroll(true);
    }

    /** Adopt the conversation once a customer's first message has opened it. */
    adopt(conversationId) {
      if (!this.conversationId) this.conversationId = conversationId;
    }

    _mine(conversationId) {
      return conversationId === this.conversationId || (!conversationId && this.client.role === "customer");
    }

    message(m) {
      if (m.conversationId !== this.conversationId || this.bySeq.has(m.seq)) return;
      const stick = this._nearBottom();
      let li = this.byCmid.get(m.clientMessageId);
      if (li && this.client.isMine(m)) this.byCmid.delete(m.clientMessageId);
      else li = this._item(m.sender, m.clientMessageId);
      this._fill(li, m.sender, m.text, m.createdAt, this.client.isMine(m) ? "sent" : null, m.seq, null, m);
      this.bySeq.set(m.seq, li);
      // place by seq; unsequenced (pending) items stay at the end
      let next = null;
      for (const [seq, other] of this.bySeq) if (seq > m.seq && (!next || seq < next.seq)) next = { seq, el: other };
      const firstPending = Array.from(this.list.children).find((el) => !el.dataset.seq && el !== li);
      this.list.insertBefore(li, next ? next.el : firstPending || null);
      this._scroll(stick);
    }

    /** Render one shown message again (e.g. after its rating changed). */
    refresh(seq) {
      const li = this.bySeq.get(seq);
      const c = this.conversationId && this.client.conversations.get(this.conversationId);
      const m = c && c.messages.get(seq);
      if (!li || !m) return;
      const stick = this._nearBottom();
      this._fill(li, m.sender, m.text, m.createdAt, this.client.isMine(m) ? "sent" : null, m.seq, null, m);
      this._scroll(stick);
    }

    outbox(item) {
      if (!this._mine(item.conversationId)) return;
      if (item.state === "sent") return; // message() places it with its seq
      const stick = this._nearBottom();
      let li = this.byCmid.get(item.clientMessageId);
      if (item.state === "discarded") {
        if (li) li.remove();
        this.byCmid.delete(item.clientMessageId);
        return;
      }
      if (!li) {
        li = this._item({ role: this.client.role, id: this.client.userId }, item.clientMessageId);
        this.byCmid.set(item.clientMessageId, li);
        this.list.appendChild(li);
      }
      this._fill(li, { role: this.client.role, id: this.client.userId }, item.text, item.createdAt, item.state, null, item);
      this._scroll(stick);
    }

    _item(sender, clientMessageId) {
      const li = document.createElement("li");
      li.dataset.cmid = clientMessageId || "";
      return li;
    }

    _fill(li, sender, text, createdAt, state, seq, item, message) {
      const mine = sender && sender.role === this.client.role && sender.id === this.client.userId;
      const bot = !!sender && sender.role === "bot";
      const kind = sender && sender.role === "system" ? "system" : mine ? "mine" : bot ? "theirs bot" : "theirs";
      li.className = `msg ${kind}${state ? " " + state : ""}`;
      if (seq) li.dataset.seq = String(seq);
      const meta = document.createElement("div");
      meta.className = "meta";
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = mine ? this.labels.me
        : bot ? `🤖 ${sender.name || sender.id} · ${this.labels.bot}` : (sender && (sender.name || sender.id)) || "";
      const time = document.createElement("time");
      if (createdAt) {
        time.dateTime = createdAt;
        time.textContent = new Date(createdAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      }
      meta.append(who, time);
      if (state) {
        const badge = document.createElement("span");
        badge.className = "state";
        badge.textContent = this.labels[state] || state;
        meta.append(badge);
      }
      const body = document.createElement("p");
      body.className = "text";
      body.textContent = text;
      li.replaceChildren(meta, body);
      const files = (message && message.attachments) || (item && item.attachments) || [];
      if (files.length) li.append(this._attachments(files, message ? message.conversationId : item.conversationId, !!message));
      if (state === "failed" && item) {
        const why = document.createElement("p");
        why.className = "why";
        why.textContent = item.error ? `${item.error.code}: ${item.error.message}` : "";
        const actions = document.createElement("div");
        actions.className = "actions";
        const retry = document.createElement("button");
        retry.type = "button";
        retry.textContent = this.labels.retry;
        retry.onclick = () => this.client.retry(item.clientMessageId);
        const discard = document.createElement("button");
        discard.type = "button";
        discard.className = "secondary";
        discard.textContent = this.labels.discard;
        discard.onclick = () => this.client.discard(item.clientMessageId);
        actions.append(retry, discard);
        li.append(why, actions);
      }
      if (message && typeof this.decorate === "function") {
        try {
          this.decorate(li, message);
        } catch (e) {
          if (root.console) root.console.error("kefu: decorate failed", e);
        }
      }
    }

    /**
     * A message's files: images as previews (opening the full image), others as download links with their
     * size. Links are fetched when shown (they expire); an outbox item's files are names only until sent.
     */
    _attachments(files, conversationId, sent) {
      const ul = document.createElement("ul");
      ul.className = "attachments";
      for (const ref of files) {
        const li = document.createElement("li");
        const image = /^image\//.test(ref.contentType || "");
        const a = document.createElement("a");
        a.className = image ? "attachment image" : "attachment file";
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = ref.name || "file";
        const size = document.createElement("span");
        size.className = "size";
        size.textContent = formatSize(ref.size);
        if (image) {
          const img = document.createElement("img");
          img.alt = ref.name || "";
          img.loading = "lazy";
          if (ref.width && ref.height) { img.width = Math.min(ref.width, 220); img.height = Math.round(img.width * ref.height / ref.width); }
          a.append(img);
        }
        a.append(name, size);
        li.append(a);
        ul.append(li);
        if (!sent) continue;
        this.client.attachmentLink(conversationId, ref).then((link) => {
          a.href = link.url;
          if (!image) a.setAttribute("download", ref.name || "");
          const img = a.querySelector("img");
          if (img) img.src = link.url;
        }).catch(() => { a.classList.add("unavailable"); });
      }
      return ul;
    }

    _nearBottom() {
      const el = this.list;
      return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    }

    _scroll(stick) {
      if (stick) this.list.scrollTop = this.list.scrollHeight;
    }
  }

  KefuClient.MessageList = MessageList;

  /**
   * The files picked for the next message (a page's composer): each is uploaded at once (uploadAttachment)
   * and shown in `tray` as a chip with its state and a remove button. refs(): the uploaded references, for
   * send(text, id, {attachments}); busy: an upload is under way; clear() after sending. t(key, values) gives
   * the strings "uploading", "uploadFailed", "removeFile", "tooManyFiles" (i18n.js); onError(text) reports.
   */
  class AttachmentTray {
    constructor(client, tray, options) {
      this.client = client;
      this.tray = tray;
      this.t = options.t;
      this.conversationId = options.conversationId;
      this.onError = options.onError || (() => {});
      this.onChange = options.onChange || (() => {});
      this.items = []; // {file, state: "uploading" | "ready" | "failed", ref, error}
    }

    get busy() { return this.items.some((i) => i.state === "uploading"); }
    refs() { return this.items.filter((i) => i.state === "ready").map((i) => i.ref); }

    add(files) {
      const id = this.conversationId();
      for (const file of Array.from(files || [])) {
        if (this.items.length >= MAX_ATTACHMENTS) {
          this.onError(this.t("tooManyFiles", { max: MAX_ATTACHMENTS }));
          break;
        }
        const item = { file, state: "uploading", ref: null, error: null };
        this.items.push(item);
        this.client.uploadAttachment(id, file).then((ref) => {
          Object.assign(item, { state: "ready", ref });
        }).catch((e) => {
          Object.assign(item, { state: "failed", error: e.message || String(e) });
          this.onError(this.t("uploadFailed", { message: `${file.name}: ${item.error}` }));
        }).finally(() => this.render());
      }
      this.render();
    }

    remove(item) {
      this.items = this.items.filter((i) => i !== item);
      this.render();
    }

    clear() {
      this.items = [];
      this.render();
    }

    render() {
      this.tray.replaceChildren(...this.items.map((item) => {
        const li = document.createElement("li");
        li.className = `chip ${item.state}`;
        const name = document.createElement("span");
        name.textContent = item.state === "uploading" ? this.t("uploading", { name: item.file.name }) : item.file.name;
        const size = document.createElement("span");
        size.className = "size";
        size.textContent = formatSize(item.file.size);
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link";
        remove.textContent = "×";
        remove.setAttribute("aria-label", this.t("removeFile", { name: item.file.name }));
        remove.onclick = () => this.remove(item);
        li.append(name, size, remove);
        return li;
      }));
      this.tray.hidden = !this.items.length;
      this.onChange();
    }
  }

  KefuClient.AttachmentTray = AttachmentTray;

  root.KefuClient = KefuClient;
  if (typeof module === "object" && module.exports) module.exports = KefuClient;
})(typeof globalThis !== "undefined" ? globalThis : this);
