/*! TaskGate browser client — https://github.com/ (see docs/client.md)
 *
 * One file, no dependencies, no build step.
 *
 *   Classic script:  <script src="/taskgate.js"></script>   ->  window.TaskGate
 *   ES module:       import { TaskGate } from '/taskgate.mjs'   (taskgate.mjs imports this file and re-exports it)
 *
 *   const tg = TaskGate.connect({ uid: 'alice' });
 *   const task = await tg.submit('sleep', { ms: 2000 }, { onProgress: (t) => console.log(t.progress) });
 *
 * Transports, in order of preference: WebSocket (/ws), Server-Sent Events (/sse, commands via POST /poll) and
 * HTTP long-poll (GET/POST /poll). The client falls back when a transport cannot be established, probes the better
 * one again later, reconnects with exponential backoff and jitter, and resumes from its cursor (the last event
 * `seq`, kept in sessionStorage per uid) so no event is lost or delivered twice.
 */
(function (root, factory) {
  'use strict';
  var TaskGate = factory(root);
  if (typeof module === 'object' && module && module.exports) { module.exports = TaskGate; }
  if (root) { root.TaskGate = TaskGate; }
})(typeof globalThis !== 'undefined' ? globalThis : (typeof self !== 'undefined' ? self : this), function (root) {
  'use strict';

  var VERSION = '1.0.0';
  var TRANSPORTS = ['websocket', 'sse', 'long-poll'];
  var ALIASES = {
    websocket: 'websocket', ws: 'websocket',
    sse: 'sse', eventsource: 'sse', 'server-sent-events': 'sse',
    'long-poll': 'long-poll', longpoll: 'long-poll', poll: 'long-poll'
  };
  var FINAL = { succeeded: true, failed: true, cancelled: true, timed_out: true };
  var SERVER_COMMANDS = { ping: true, status: true, cancel: true, handlers: true, clients: true, reload: true };
  var RESENDABLE = { ping: true, status: true, handlers: true, clients: true };
  var UID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
  var DEFAULTS = {
    transports: TRANSPORTS,
    replay: 'none',            // no stored cursor: 'none' = live events only, 'all' = every retained event
    pollTimeout: 25,           // s, GET /poll wait
    helloTimeout: 10000,       // ms until a transport counts as failed
    requestTimeout: 30000,     // ms until a command without a reply is rejected
    reconnectDelay: 500,       // ms, first backoff step
    maxReconnectDelay: 15000,  // ms, backoff cap
    jitter: 0.5,               // each delay is multiplied by a random factor in [1 - jitter, 1]
    upgradeInterval: 30000,    // ms between attempts to go back to a better transport (0 = never)
    keepAlive: 30000,          // ms between WebSocket keep-alive pings (0 = off)
    admin: false,
    autoConnect: true,
    doneCache: 500             // done events remembered for submit() replies that arrive after the event
  };

  // ------------------------------------------------------------------ small helpers

  function hasOwn(o, k) { return Object.prototype.hasOwnProperty.call(o, k); }
  function isObject(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
  function copy(o) { var out = {}; Object.keys(o).forEach(function (k) { out[k] = o[k]; }); return out; }

  /**
   * The whole task `base` (from a submitted or status reply) with the fields of an event's task merged in: an event
   * carries only what changed (progress: status, progress, attempts; done: status, result, error). A new object;
   * without a base, a copy of the event's task.
   */
  function mergeTask(base, change) {
    var out = isObject(base) ? copy(base) : {};
    Object.keys(change).forEach(function (k) { out[k] = change[k]; });
    return out;
  }
  function now() { return Date.now(); }
  function noop() {}

  function randomId(n) {
    var chars = 'abcdefghijkmnpqrstuvwxyz23456789';
    var out = '';
    var buf = null;
    try {
      if (root.crypto && root.crypto.getRandomValues) { buf = root.crypto.getRandomValues(new Uint8Array(n)); }
    } catch (e) { buf = null; }
    for (var i = 0; i < n; i++) {
      out += chars.charAt((buf ? buf[i] : Math.floor(Math.random() * 256)) % chars.length);
    }
    return out;
  }

  function parseJson(text) {
    try { return JSON.parse(text); } catch (e) { return undefined; }
  }

  function defaultStorage() {
    try {
      var s = root.sessionStorage;
      var probe = '__taskgate_probe__';
      s.setItem(probe, '1');
      s.removeItem(probe);
      return s;
    } catch (e) {
      return null;
    }
  }

  /** The `sub` claim of a JWT, without checking anything (the server does that). */
  function jwtSubject(token) {
    try {
      var part = String(token).split('.')[1];
      var b64 = part.replace(/-/g, '+').replace(/_/g, '/');
      while (b64.length % 4) { b64 += '='; }
      var json = decodeURIComponent(Array.prototype.map.call(root.atob(b64), function (c) {
        return '%' + ('00' + c.charCodeAt(0).toString(16)).slice(-2);
      }).join(''));
      var claims = JSON.parse(json);
      return typeof claims.sub === 'string' ? claims.sub : null;
    } catch (e) {
      return null;
    }
  }

  function normalizeTransports(list) {
    var out = [];
    (list || TRANSPORTS).forEach(function (t) {
      var name = ALIASES[String(t).toLowerCase()];
      if (!name) { throw new TypeError('TaskGate: unknown transport ' + JSON.stringify(t)); }
      if (out.indexOf(name) < 0) { out.push(name); }
    });
    if (!out.length) { throw new TypeError('TaskGate: transports must name at least one transport'); }
    return out;
  }

  function supported(transport) {
    if (transport === 'websocket') { return typeof root.WebSocket === 'function'; }
    if (transport === 'sse') { return typeof root.EventSource === 'function'; }
    return typeof root.fetch === 'function' || typeof root.XMLHttpRequest === 'function';
  }

  function appendQuery(url, query) {
    if (!query) { return url; }
    return url + (url.indexOf('?') >= 0 ? '&' : '?') + query;
  }

  function toWebSocketUrl(url) {
    return url.replace(/^http(s?):\/\//i, 'ws$1://');
  }

  /**
   * httpRequest(method, url, {body, timeout, headers}) -> {promise, abort}
   * Resolves with {status, text}; rejects on network errors, timeouts and aborts (HTTP errors resolve).
   */
  function httpRequest(method, url, options) {
    options = options || {};
    var timer = null;
    var aborted = false;
    var abortFn = noop;
    var promise = new Promise(function (resolve, reject) {
      var headers = options.headers || {};
      if (options.body !== undefined) { headers['Content-Type'] = 'application/json'; }
      function fail(message) {
        var err = new Error(message);
        err.aborted = aborted;
        reject(err);
      }
      if (typeof root.fetch === 'function') {
        var ctrl = typeof root.AbortController === 'function' ? new root.AbortController() : null;
        abortFn = function () { if (ctrl) { ctrl.abort(); } };
        root.fetch(url, {
          method: method, headers: headers, body: options.body, cache: 'no-store',
          credentials: options.credentials || 'same-origin', signal: ctrl ? ctrl.signal : undefined
        }).then(function (resp) {
          return resp.text().then(function (text) { resolve({ status: resp.status, text: text }); });
        }).catch(function (e) {
          fail(aborted ? (timer === 'expired' ? 'timed out' : 'aborted') : ((e && e.message) || 'network error'));
        });
      } else {
        var xhr = new root.XMLHttpRequest();
        abortFn = function () { try { xhr.abort(); } catch (e) { /* ignore */ } };
        xhr.open(method, url, true);
        Object.keys(headers).forEach(function (k) { xhr.setRequestHeader(k, headers[k]); });
        xhr.onload = function () { resolve({ status: xhr.status, text: xhr.responseText }); };
        xhr.onerror = function () { fail('network error'); };
        xhr.onabort = function () { fail(timer === 'expired' ? 'timed out' : 'aborted'); };
        xhr.send(options.body === undefined ? null : options.body);
      }
      if (options.timeout) {
        timer = setTimeout(function () {
          timer = 'expired';
          aborted = true;
          abortFn();
        }, options.timeout);
      }
    });
    var settle = function () { if (timer && timer !== 'expired') { clearTimeout(timer); } };
    promise.then(settle, settle);
    return {
      promise: promise,
      abort: function () { aborted = true; abortFn(); }
    };
  }

  // ------------------------------------------------------------------ errors

  /**
   * Rejection reason of the client's promises.
   *   error reply:   code (HTTP-like), error (slug), info (text), reply
   *   task outcome:  code 200, error = task.status ('failed' | 'timed_out' | 'cancelled'), info = task.error, task
   *   client side:   code 0, error 'disconnected' | 'timeout' | 'closed' | 'bad_reply'
   */
  class TaskGateError extends Error {
    constructor(message, props) {
      super(message);
      this.name = 'TaskGateError';
      if (props) { Object.keys(props).forEach(function (k) { this[k] = props[k]; }, this); }
    }
  }

  function replyError(reply) {
    var text = (reply.error || 'error') + (reply.info ? ': ' + reply.info : '');
    return new TaskGateError(text, {
      code: reply.code, error: reply.error, info: reply.info, ref: reply.ref, reply: reply
    });
  }

  function taskError(task) {
    return new TaskGateError('task ' + task.id + ' ' + task.status + (task.error ? ': ' + task.error : ''), {
      code: 200, error: task.status, info: task.error, task: task
    });
  }

  function clientError(slug, message) {
    return new TaskGateError(message, { code: 0, error: slug, info: message });
  }

  // ------------------------------------------------------------------ links (one transport connection each)

  /* Every link calls back into the client with itself as the first argument, so that callbacks of a link that
   * has been replaced are recognised and ignored. `established` becomes true on hello (WebSocket, SSE) or on the
   * first answered GET /poll (long-poll). */

  function WebSocketLink(client) {
    this.client = client;
    this.transport = 'websocket';
    this.established = false;
    this.closed = false;
    this.sentCursor = client._cursor;
  }
  WebSocketLink.prototype.start = function (url) {
    var self = this;
    var client = this.client;
    if (this.closed) { return; }
    this.sentCursor = client._cursor;
    var ws;
    try {
      ws = new root.WebSocket(url);
    } catch (e) {
      this.closed = true;
      setTimeout(function () { client._linkClosed(self, 'WebSocket failed: ' + ((e && e.message) || e)); }, 0);
      return;
    }
    this.ws = ws;
    this.helloTimer = setTimeout(function () {
      self.close();
      client._linkClosed(self, 'no hello within ' + client.options.helloTimeout + ' ms');
    }, client.options.helloTimeout);
    ws.onmessage = function (e) {
      if (self.closed) { return; }
      var msg = typeof e.data === 'string' ? parseJson(e.data) : undefined;
      if (!isObject(msg)) {
        client._emit('error', { message: 'unreadable message from the server', transport: 'websocket', data: e.data });
        return;
      }
      if (msg.type === 'hello') {
        clearTimeout(self.helloTimer);
        client._hello(self, msg);
      } else {
        client._message(self, msg);
      }
    };
    ws.onclose = function (e) {
      if (self.closed) { return; }
      self.closed = true;
      clearTimeout(self.helloTimer);
      client._linkClosed(self, (self.established ? 'connection lost' : 'could not connect') +
        ' (WebSocket close code ' + e.code + (e.reason ? ', ' + e.reason : '') + ')');
    };
  };
  WebSocketLink.prototype.send = function (text) {
    if (this.closed || !this.ws || this.ws.readyState !== 1) { return false; }
    try { this.ws.send(text); return true; } catch (e) { return false; }
  };
  WebSocketLink.prototype.close = function () {
    this.closed = true;
    clearTimeout(this.helloTimer);
    if (this.ws) {
      this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
      try { this.ws.close(1000, 'client closed'); } catch (e) { /* ignore */ }
    }
  };

  function SSELink(client) {
    this.client = client;
    this.transport = 'sse';
    this.established = false;
    this.closed = false;
    this.sentCursor = client._cursor;
  }
  SSELink.prototype.start = function (url) {
    var self = this;
    var client = this.client;
    if (this.closed) { return; }
    this.sentCursor = client._cursor;
    var es;
    try {
      es = new root.EventSource(url, { withCredentials: !!client.options.withCredentials });
    } catch (e) {
      this.closed = true;
      setTimeout(function () { client._linkClosed(self, 'EventSource failed: ' + ((e && e.message) || e)); }, 0);
      return;
    }
    this.es = es;
    this.helloTimer = setTimeout(function () {
      self.close();
      client._linkClosed(self, 'no hello within ' + client.options.helloTimeout + ' ms');
    }, client.options.helloTimeout);
    function parse(e) {
      var msg = parseJson(e.data);
      if (!isObject(msg)) {
        client._emit('error', { message: 'unreadable message from the server', transport: 'sse', data: e.data });
      }
      return isObject(msg) ? msg : null;
    }
    es.addEventListener('hello', function (e) {
      if (self.closed) { return; }
      var msg = parse(e);
      if (!msg) { return; }
      clearTimeout(self.helloTimer);
      client._hello(self, msg);
    });
    ['progress', 'done'].forEach(function (type) {
      es.addEventListener(type, function (e) {
        if (self.closed) { return; }
        var msg = parse(e);
        if (msg) { client._message(self, msg); }
      });
    });
    es.addEventListener('message', function (e) { // frames without an event name
      if (self.closed) { return; }
      var msg = parse(e);
      if (msg) { client._message(self, msg); }
    });
    // "error" is both EventSource's connection error and the name of a server error frame (event: error).
    es.addEventListener('error', function (e) {
      if (self.closed) { return; }
      if (typeof e.data === 'string' && e.data) {
        var msg = parse(e);
        if (msg) { client._message(self, msg); }
        return;
      }
      // We reconnect ourselves (with backoff, fallback and ?cursor=), not with EventSource's built-in retry.
      self.close();
      client._linkClosed(self, self.established ? 'connection lost (SSE stream ended)' : 'could not connect (SSE)');
    });
  };
  SSELink.prototype.close = function () {
    this.closed = true;
    clearTimeout(this.helloTimer);
    if (this.es) { try { this.es.close(); } catch (e) { /* ignore */ } }
  };

  function PollLink(client, urlFor) {
    this.transport = 'long-poll';
    this.established = false;
    this.closed = false;
    this.sentCursor = client._cursor;
    this.client = client;
    this.urlFor = urlFor;      // function(cursor, timeout) -> Promise<url>
    this.request = null;
    var self = this;
    setTimeout(function () { self._poll(true); }, 0);
  }
  PollLink.prototype._poll = function (first) {
    var self = this;
    var client = this.client;
    if (this.closed) { return; }
    // The first request answers at once: it proves the transport works (and, without a cursor, tells the latest seq).
    var timeout = first ? 0 : client.options.pollTimeout;
    var cursor = client._cursor === null ? 0 : client._cursor;
    this.urlFor(cursor, timeout).then(function (url) {
      if (self.closed) { return; }
      self.request = httpRequest('GET', url, { timeout: (timeout + 15) * 1000 });
      return self.request.promise.then(function (resp) {
        if (self.closed) { return; }
        var body = parseJson(resp.text);
        if (resp.status !== 200 || !isObject(body) || !Array.isArray(body.events)) {
          var info = isObject(body) && body.info ? ': ' + body.info : '';
          self.closed = true;
          client._linkClosed(self, 'GET /poll answered HTTP ' + resp.status + info, resp.status);
          return;
        }
        client._pollBatch(self, body, first);
        if (!self.closed) { setTimeout(function () { self._poll(false); }, 0); }
      });
    }).catch(function (e) {
      if (self.closed) { return; }
      self.closed = true;
      client._linkClosed(self, (self.established ? 'connection lost' : 'could not connect') +
        ' (GET /poll: ' + ((e && e.message) || e) + ')');
    });
  };
  PollLink.prototype.close = function () {
    this.closed = true;
    if (this.request) { this.request.abort(); }
  };

  // ------------------------------------------------------------------ the client

  /**
   * new TaskGate.Client(options) — see TaskGate.connect.
   * Events (CustomEvent, data in event.detail): state, hello, resumed, progress, done, reply, error.
   */
  class Client extends EventTarget {
    constructor(options) {
      super();
      this._init(options || {});
    }
  }

  Client.prototype._init = function (options) {
    var o = {};
    Object.keys(DEFAULTS).forEach(function (k) { o[k] = DEFAULTS[k]; });
    Object.keys(options).forEach(function (k) { if (options[k] !== undefined) { o[k] = options[k]; } });
    this.options = o;

    if (o.token === undefined && o.uid === undefined) {
      throw new TypeError('TaskGate: pass {uid} or {token}');
    }
    if (o.token === undefined && !UID_RE.test(String(o.uid))) {
      throw new TypeError('TaskGate: uid must be 1-128 characters of A-Z a-z 0-9 . _ : @ -');
    }
    var base = o.url;
    if (!base) {
      if (!root.location || !/^https?:$/.test(root.location.protocol)) {
        throw new TypeError('TaskGate: pass {url} (the page is not served over http)');
      }
      base = root.location.origin;
    }
    this.url = String(base).replace(/\/+$/, '');
    this.transports = normalizeTransports(o.transports);
    this.storage = hasOwn(options, 'storage') ? options.storage : defaultStorage();

    this._uid = o.token === undefined ? String(o.uid) : (typeof o.token === 'string' ? jwtSubject(o.token) : null);
    this._cursor = null;         // last seq processed; null = none yet
    this._cursorLoaded = false;
    this._active = false;
    this._state = 'disconnected';
    this._transport = null;
    this._link = null;
    this._probe = null;
    this._round = [];
    this._roundPos = 0;
    this._roundFailed = [];
    this._demoted = {};
    this._failures = 0;
    this._probeFailures = 0;
    this._retryTimer = null;
    this._retryAt = 0;
    this._upgradeTimer = null;
    this._keepAliveTimer = null;
    this._refCounter = 0;
    this._pending = {};          // ref -> request entry
    this._watchers = {};         // task id -> [{resolve, reject, onProgress}]
    this._doneCache = {};        // task id -> final task (recent)
    this._doneOrder = [];
    this._onlineListener = null;

    if (typeof o.cursor === 'number' && o.cursor >= 0) {
      this._cursor = Math.floor(o.cursor);
      this._cursorLoaded = true;
    } else if (this._uid !== null) {
      this._loadCursor();
    }
    if (o.autoConnect) { this.open(); }
  };

  // ---- public properties

  Object.defineProperties(Client.prototype, {
    /** 'connecting' | 'connected' | 'disconnected' */
    state: { get: function () { return this._state; } },
    /** The transport in use (or being tried): 'websocket' | 'sse' | 'long-poll' | null. */
    transport: { get: function () { return this._transport; } },
    /** The last event seq processed (null before the first hello when there was nothing to resume from). */
    cursor: { get: function () { return this._cursor; } },
    /** The uid (in token mode: the token's `sub` claim, once known). */
    uid: { get: function () { return this._uid; } },
    connected: { get: function () { return this._state === 'connected'; } }
  });

  // ---- events

  Client.prototype._emit = function (type, detail) {
    var ev;
    if (typeof root.CustomEvent === 'function') {
      ev = new root.CustomEvent(type, { detail: detail });
    } else {
      ev = new Event(type);
      ev.detail = detail;
    }
    this.dispatchEvent(ev);
  };

  /** client.on('done', (detail, event) => …) — returns a function that removes the listener. */
  Client.prototype.on = function (type, fn) {
    var self = this;
    var listener = function (e) { fn.call(self, e.detail, e); };
    this.addEventListener(type, listener);
    return function () { self.removeEventListener(type, listener); };
  };

  // ---- cursor storage

  Client.prototype.storageKey = function () {
    if (this.options.storageKey) { return this.options.storageKey; }
    return this._uid === null ? null : 'taskgate.cursor.' + this._uid;
  };

  Client.prototype._loadCursor = function () {
    this._cursorLoaded = true;
    var key = this.storageKey();
    if (this.storage && key) {
      try {
        var v = this.storage.getItem(key);
        if (v !== null && /^\d+$/.test(v)) { this._cursor = parseInt(v, 10); return; }
      } catch (e) { /* unavailable: start without */ }
    }
    if (this.options.replay === 'all') { this._cursor = 0; }
  };

  Client.prototype._setCursor = function (n) {
    this._cursor = n;
    var key = this.storageKey();
    if (this.storage && key) {
      try { this.storage.setItem(key, String(n)); } catch (e) { /* quota: ignore */ }
    }
  };

  // ---- URLs and identity

  Client.prototype._identity = function () {
    var self = this;
    var o = this.options;
    if (o.token === undefined) {
      return Promise.resolve('uid=' + encodeURIComponent(this._uid) + (o.admin ? '&admin=1' : ''));
    }
    return Promise.resolve(typeof o.token === 'function' ? o.token() : o.token).then(function (token) {
      if (typeof token !== 'string' || !token) { throw new Error('the token function returned no token'); }
      if (self._uid === null) {
        self._uid = jwtSubject(token);
        if (!self._cursorLoaded) { self._loadCursor(); }
      }
      return 'token=' + encodeURIComponent(token) + (o.admin ? '&admin=1' : '');
    });
  };

  Client.prototype._endpoint = function (kind) {
    var o = this.options;
    var override = kind === 'websocket' ? o.webSocketUrl : kind === 'sse' ? o.sseUrl : o.pollUrl;
    var url = typeof override === 'function' ? override({ transport: kind, url: this.url }) : override;
    if (!url) { url = this.url + (kind === 'websocket' ? '/ws' : kind === 'sse' ? '/sse' : '/poll'); }
    if (kind === 'websocket') { url = toWebSocketUrl(String(url)); }
    return String(url);
  };

  Client.prototype._cursorQuery = function () {
    return this._cursor === null ? '' : '&cursor=' + this._cursor;
  };

  // ---- connection management

  /** (Re)starts connecting; called by connect() unless {autoConnect: false}. */
  Client.prototype.open = function () {
    if (this._active) { return this; }
    this._active = true;
    var self = this;
    if (root.addEventListener && !this._onlineListener) {
      this._onlineListener = function () { if (self._state === 'disconnected') { self.retryNow(); } };
      root.addEventListener('online', this._onlineListener);
    }
    // Started from a timer, so that listeners added right after connect() see the first state event.
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(function () {
      self._retryTimer = null;
      if (self._active && !self._link) { self._startRound(); }
    }, 0);
    return this;
  };

  /** Closes the connection for good: pending commands and submit() promises are rejected ('closed'). */
  Client.prototype.close = function () {
    if (!this._active && this._state === 'disconnected') { return; }
    this._active = false;
    this._clearTimers();
    if (this._link) { this._link.close(); this._link = null; }
    if (this._probe) { this._probe.close(); this._probe = null; }
    if (this._onlineListener && root.removeEventListener) {
      root.removeEventListener('online', this._onlineListener);
      this._onlineListener = null;
    }
    var err = clientError('closed', 'the client was closed');
    var self = this;
    Object.keys(this._pending).forEach(function (ref) { self._settleRequest(ref, err); });
    Object.keys(this._watchers).forEach(function (id) {
      self._watchers[id].forEach(function (w) { w.reject(err); });
    });
    this._watchers = {};
    this._setState('disconnected', { transport: this._transport, reason: 'closed', closed: true });
  };

  /** Skips the backoff wait and reconnects now (no-op while connected or connecting). */
  Client.prototype.retryNow = function () {
    if (!this._active || this._state !== 'disconnected') { return; }
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._startRound();
  };

  Client.prototype._clearTimers = function () {
    clearTimeout(this._retryTimer);
    clearTimeout(this._upgradeTimer);
    clearInterval(this._keepAliveTimer);
    this._retryTimer = this._upgradeTimer = this._keepAliveTimer = null;
  };

  Client.prototype._setState = function (state, detail) {
    this._state = state;
    if (detail && detail.transport !== undefined) { this._transport = detail.transport; }
    var d = { state: state, transport: this._transport };
    if (detail) { Object.keys(detail).forEach(function (k) { d[k] = detail[k]; }); }
    this._emit('state', d);
  };

  Client.prototype._candidates = function () {
    var self = this;
    var usable = this.transports.filter(supported);
    var preferred = usable.filter(function (t) { return !self._demoted[t]; });
    return preferred.length ? preferred : usable;
  };

  Client.prototype._startRound = function () {
    this._round = this._candidates();
    this._roundPos = 0;
    this._roundFailed = [];
    if (!this._round.length) {
      this._active = false;
      this._emit('error', { message: 'none of the transports ' + this.transports.join(', ') + ' is available here' });
      this._setState('disconnected', { transport: null, reason: 'no usable transport' });
      return;
    }
    this._tryTransport();
  };

  Client.prototype._tryTransport = function () {
    var transport = this._round[this._roundPos];
    this._setState('connecting', { transport: transport, attempt: this._failures + 1 });
    this._link = this._openLink(transport);
  };

  Client.prototype._openLink = function (transport) {
    var self = this;
    if (transport === 'long-poll') {
      var endpoint = this._endpoint('long-poll');
      return new PollLink(this, function (cursor, timeout) {
        return self._identity().then(function (id) {
          return appendQuery(endpoint, id + '&cursor=' + cursor + '&timeout=' + timeout);
        });
      });
    }
    // WebSocket and EventSource take the identity (uid or a fresh token) in the URL.
    var link = transport === 'websocket' ? new WebSocketLink(this) : new SSELink(this);
    this._identity().then(function (id) {
      link.start(appendQuery(self._endpoint(transport), id + self._cursorQuery()));
    }, function (e) {
      if (link.closed) { return; }
      link.closed = true;
      self._linkClosed(link, 'no token: ' + ((e && e.message) || e));
    });
    return link;
  };

  Client.prototype._backoff = function (n) {
    var o = this.options;
    var d = Math.min(o.maxReconnectDelay, o.reconnectDelay * Math.pow(2, n));
    return Math.round(d * (1 - o.jitter * Math.random()));
  };

  Client.prototype._linkClosed = function (link, reason) {
    if (link === this._probe) {
      this._probe = null;
      this._probeFailures++;
      this._emit('error', { message: 'upgrade to ' + link.transport + ' failed: ' + reason, transport: link.transport, upgrade: true });
      this._scheduleUpgrade();
      return;
    }
    if (link !== this._link) { return; }
    this._link = null;
    clearInterval(this._keepAliveTimer);
    this._keepAliveTimer = null;
    clearTimeout(this._upgradeTimer);
    this._upgradeTimer = null;
    if (this._probe) { this._probe.close(); this._probe = null; }
    this._requeue(link);
    if (!this._active) { return; }

    if (link.established) {
      // Lost a working connection: a new round from the best transport, after a (short) backoff.
      this._emit('error', { message: reason, transport: link.transport });
      this._scheduleRound(reason, link.transport);
      return;
    }
    this._roundFailed.push(link.transport);
    this._emit('error', { message: link.transport + ': ' + reason, transport: link.transport });
    this._roundPos++;
    if (this._roundPos < this._round.length) {
      this._tryTransport();        // fall back at once
      return;
    }
    // Every transport failed: most likely the server (or the network) is down, not one transport. Start the next
    // round from the most preferred transport again.
    this._demoted = {};
    this._scheduleRound(reason, link.transport);
  };

  Client.prototype._scheduleRound = function (reason, transport) {
    var self = this;
    var delay = this._backoff(this._failures);
    this._failures++;
    this._retryAt = now() + delay;
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(function () {
      self._retryTimer = null;
      if (self._active) { self._startRound(); }
    }, delay);
    this._setState('disconnected', { transport: transport, reason: reason, retryIn: delay, attempt: this._failures });
  };

  Client.prototype._established = function (link) {
    if (link === this._probe) {
      // Upgrade: the better transport works again; drop the old one (events on both are deduplicated by seq).
      var old = this._link;
      this._probe = null;
      this._link = link;
      this._probeFailures = 0;
      var order = this.transports;
      var self = this;
      Object.keys(this._demoted).forEach(function (t) {
        if (order.indexOf(t) >= order.indexOf(link.transport)) { delete self._demoted[t]; }
      });
      if (old) {
        old.close();
        this._requeue(old);
      }
      this._connected(link, { upgraded: true, from: old ? old.transport : null });
      return;
    }
    if (link !== this._link) { return; }
    var demoted = this._demoted;
    this._roundFailed.forEach(function (t) { demoted[t] = true; });
    this._roundFailed = [];
    this._failures = 0;
    this._connected(link, {});
  };

  Client.prototype._connected = function (link, extra) {
    link.established = true;
    var detail = { transport: link.transport };
    Object.keys(extra).forEach(function (k) { detail[k] = extra[k]; });
    this._setState('connected', detail);
    this._flush();
    this._startKeepAlive(link);
    this._scheduleUpgrade();
  };

  Client.prototype._startKeepAlive = function (link) {
    var self = this;
    clearInterval(this._keepAliveTimer);
    this._keepAliveTimer = null;
    if (link.transport !== 'websocket' || !this.options.keepAlive) { return; }
    this._keepAliveTimer = setInterval(function () {
      if (self._link !== link) { return; }
      self._request('ping', undefined, { silent: true, timeout: Math.min(10000, self.options.keepAlive) })
        .catch(function (e) {
          if (self._link === link && e && e.error === 'timeout') {
            link.close();
            self._linkClosed(link, 'keep-alive ping got no answer');
          }
        });
    }, this.options.keepAlive);
  };

  Client.prototype._scheduleUpgrade = function () {
    var self = this;
    clearTimeout(this._upgradeTimer);
    this._upgradeTimer = null;
    if (!this.options.upgradeInterval || !this._link || !this._link.established || this._probe) { return; }
    var current = this.transports.indexOf(this._link.transport);
    var better = this.transports.filter(function (t, i) { return i < current && supported(t); });
    if (!better.length) { return; }
    var delay = Math.min(10 * 60 * 1000, this.options.upgradeInterval * Math.pow(2, this._probeFailures));
    this._upgradeTimer = setTimeout(function () {
      self._upgradeTimer = null;
      if (!self._active || self._state !== 'connected' || self._probe) { return; }
      self._probe = self._openLink(better[0]);
    }, delay);
  };

  // ---- incoming

  Client.prototype._hello = function (link, msg) {
    if (link !== this._link && link !== this._probe) { return; }
    // The uid's latest seq is `head` (a server from before December 2026 called it `seq`).
    var latest = typeof msg.head === 'number' ? msg.head : (typeof msg.seq === 'number' ? msg.seq : null);
    var sent = link.sentCursor;
    var reset = !!msg.reset || (sent !== null && latest !== null && latest < sent);
    if (sent === null) {
      if (latest !== null && (this._cursor === null || latest > this._cursor)) { this._setCursor(latest); }
    } else if (reset) {
      // The replay starts at the oldest retained event: accept it whatever our old numbering said.
      this._setCursor(0);
    }
    this._established(link);
    this._emit('hello', msg);
    this._resumed(link, sent, latest, reset);
  };

  Client.prototype._resumed = function (link, sent, latest, reset) {
    this._emit('resumed', {
      complete: !reset, reset: reset, cursor: sent, latest: latest, transport: link.transport, fresh: sent === null
    });
    if (reset) { this._recheckWatched(); }
  };

  Client.prototype._pollBatch = function (link, body, first) {
    if (link !== this._link && link !== this._probe) { return; }
    var reset = !!body.reset;
    var sent = link.sentCursor;
    var i;
    if (first) {
      if (sent === null) {
        // Live only: what is in the log already is history (like a WebSocket without cursor).
        this._setCursor(typeof body.cursor === 'number' ? body.cursor : 0);
        reset = false;
      } else {
        if (reset) { this._setCursor(0); }
        for (i = 0; i < body.events.length; i++) { this._message(link, body.events[i]); }
        if (typeof body.cursor === 'number' && body.cursor > (this._cursor || 0)) { this._setCursor(body.cursor); }
      }
      this._established(link);
      this._emit('hello', {
        type: 'hello', info: 'connected', uid: this._uid, transport: 'long-poll', head: this._cursor, admin: !!this.options.admin,
        reset: reset, synthetic: true
      });
      this._resumed(link, sent, this._cursor, reset);
      return;
    }
    if (reset) {
      this._setCursor(0);
      this._emit('resumed', {
        complete: false, reset: true, cursor: sent, latest: body.cursor, transport: 'long-poll', fresh: false
      });
      this._recheckWatched();
    }
    for (i = 0; i < body.events.length; i++) { this._message(link, body.events[i]); }
    if (typeof body.cursor === 'number' && body.cursor > (this._cursor || 0)) { this._setCursor(body.cursor); }
  };

  Client.prototype._message = function (link, msg) {
    if (!isObject(msg)) { return; }
    if ((msg.type === 'progress' || msg.type === 'done') && typeof msg.seq === 'number') {
      this._event(msg);
    } else if (msg.type === 'hello') {
      // handled by the link
    } else {
      this._reply(msg);
    }
  };

  Client.prototype._event = function (ev) {
    if (this._cursor !== null && ev.seq <= this._cursor) { return; }   // seen already
    this._setCursor(ev.seq);
    var task = isObject(ev.task) ? ev.task : null;
    this._emit(ev.type, ev);
    if (!task) { return; }
    var watchers = this._watchers[task.id];
    if (ev.type === 'progress') {
      if (watchers) {
        watchers.forEach(function (w) {
          w.task = mergeTask(w.task, task);   // the whole task, as of this event
          if (w.onProgress) {
            var whole = w.task;
            try { w.onProgress(whole, ev); } catch (e) { setTimeout(function () { throw e; }, 0); }
          }
        });
      }
      return;
    }
    this._rememberDone(task);
    if (watchers) {
      delete this._watchers[task.id];
      watchers.forEach(function (w) { settleTask(w, mergeTask(w.task, task)); });
    }
  };

  /** Remembers a done event's task (what it changed: status, result, error) for a submit() reply that comes later. */
  Client.prototype._rememberDone = function (task) {
    if (!hasOwn(this._doneCache, task.id)) { this._doneOrder.push(task.id); }
    this._doneCache[task.id] = task;
    while (this._doneOrder.length > this.options.doneCache) { delete this._doneCache[this._doneOrder.shift()]; }
  };

  function settleTask(watcher, task) {
    if (task.status === 'succeeded') { watcher.resolve(task); } else { watcher.reject(taskError(task)); }
  }

  Client.prototype._reply = function (msg) {
    var ref = msg.ref;
    var entry = typeof ref === 'string' && hasOwn(this._pending, ref) ? this._pending[ref] : null;
    if (!entry) {
      if (msg.type === 'error') {
        this._emit('error', { message: (msg.error || 'error') + (msg.info ? ': ' + msg.info : ''), reply: msg, code: msg.code, error: msg.error });
      }
      this._emit('reply', msg);
      return;
    }
    if (!entry.silent) { this._emit('reply', msg); }
    if (msg.type === 'error') {
      this._settleRequest(ref, replyError(msg));
    } else {
      this._settleRequest(ref, null, msg);
    }
  };

  /** After an incomplete resume, ask for the state of the tasks that submit() promises wait for. */
  Client.prototype._recheckWatched = function () {
    var self = this;
    Object.keys(this._watchers).forEach(function (id) {
      self.status(id).then(function (task) {
        if (FINAL[task.status] && self._watchers[id]) {
          var ws = self._watchers[id];
          delete self._watchers[id];
          ws.forEach(function (w) { settleTask(w, task); });
        }
      }, noop);
    });
  };

  // ---- outgoing

  Client.prototype._request = function (cmd, args, opts) {
    var self = this;
    opts = opts || {};
    if (!this._active) { return Promise.reject(clientError('closed', 'the client is closed')); }
    var ref = 'tg' + (++this._refCounter) + '-' + randomId(4);
    var msg = { cmd: cmd, ref: ref };
    if (args !== undefined) { msg.args = args; }
    return new Promise(function (resolve, reject) {
      var entry = {
        ref: ref, msg: msg, resolve: resolve, reject: reject, silent: !!opts.silent, sentOn: null, sentAt: 0,
        resendable: hasOwn(RESENDABLE, cmd) || (!hasOwn(SERVER_COMMANDS, cmd) && isObject(args) && typeof args.id === 'string')
      };
      entry.timer = setTimeout(function () {
        self._settleRequest(ref, clientError('timeout', 'no reply to ' + cmd + ' within ' + (opts.timeout || self.options.requestTimeout) + ' ms'));
      }, opts.timeout || self.options.requestTimeout);
      self._pending[ref] = entry;
      if (self._state === 'connected') { self._sendEntry(entry); }
    });
  };

  Client.prototype._settleRequest = function (ref, err, reply) {
    var entry = this._pending[ref];
    if (!entry) { return; }
    delete this._pending[ref];
    clearTimeout(entry.timer);
    if (err) { entry.reject(err); } else { entry.resolve(reply); }
  };

  Client.prototype._flush = function () {
    var self = this;
    Object.keys(this._pending).forEach(function (ref) {
      var entry = self._pending[ref];
      if (entry && !entry.sentOn) { self._sendEntry(entry); }
    });
  };

  Client.prototype._sendEntry = function (entry) {
    var self = this;
    var link = this._link;
    if (!link || !link.established) { return; }
    entry.sentAt = now();
    if (link.transport === 'websocket') {
      if (link.send(JSON.stringify(entry.msg))) { entry.sentOn = link; }
      return;
    }
    // SSE and long-poll: the command is a POST /poll; its answer is the reply (HTTP status = code).
    entry.sentOn = 'post';
    var endpoint = this._endpoint('long-poll');
    this._identity().then(function (id) {
      var req = httpRequest('POST', appendQuery(endpoint, id), {
        body: JSON.stringify(entry.msg), timeout: self.options.requestTimeout
      });
      return req.promise.then(function (resp) {
        var reply = parseJson(resp.text);
        if (!isObject(reply) || typeof reply.type !== 'string') {
          self._settleRequest(entry.ref, new TaskGateError('POST /poll answered HTTP ' + resp.status + ' without a reply', {
            code: resp.status, error: 'bad_reply', info: String(resp.text || '').slice(0, 200)
          }));
          return;
        }
        if (reply.ref === undefined || reply.ref === null) { reply.ref = entry.ref; }
        if (reply.code === undefined || reply.code === null) { reply.code = resp.status; }
        self._reply(reply);
      });
    }).catch(function (e) {
      if (!hasOwn(self._pending, entry.ref)) { return; }
      if (entry.resendable) {
        entry.sentOn = null;   // sent again when (re)connected
        setTimeout(function () {
          if (hasOwn(self._pending, entry.ref) && !entry.sentOn && self._state === 'connected') { self._sendEntry(entry); }
        }, 1000);
      } else {
        self._settleRequest(entry.ref, clientError('disconnected',
          'POST /poll failed (' + ((e && e.message) || e) + '); the command may or may not have reached the server'));
      }
    });
  };

  /** Commands sent on a WebSocket that closed before their reply: resend the safe ones, reject the others. */
  Client.prototype._requeue = function (link) {
    var self = this;
    Object.keys(this._pending).forEach(function (ref) {
      var entry = self._pending[ref];
      if (!entry || entry.sentOn !== link) { return; }
      if (entry.resendable) {
        entry.sentOn = null;
      } else {
        self._settleRequest(ref, clientError('disconnected',
          'the connection closed before the reply to ' + entry.msg.cmd + '; it may or may not have reached the server'));
      }
    });
  };

  // ---- public commands

  /**
   * Sends any client message and resolves with its direct reply (rejects with a TaskGateError on an error reply).
   * Commands issued while not connected wait until the connection is up (up to requestTimeout).
   */
  Client.prototype.send = function (cmd, args) {
    return this._request(cmd, args);
  };

  /**
   * submit(cmd, args, {onProgress, onSubmitted, id, timeoutMs}) -> Promise<task>
   * Resolves with the final task when it succeeded; rejects with a TaskGateError carrying `task` when it failed,
   * timed out or was cancelled, or carrying code/error/info when the server refused it. The task is the whole one of
   * the submitted reply with its events' fields merged in (events carry only what changed: status, progress and
   * attempts, then status, result and error); onProgress(task, event) gets it the same way.
   */
  Client.prototype.submit = function (cmd, args, opts) {
    var self = this;
    opts = opts || {};
    if (typeof cmd !== 'string' || !cmd) { return Promise.reject(new TypeError('submit: cmd must be a handler name')); }
    if (hasOwn(SERVER_COMMANDS, cmd)) { return Promise.reject(new TypeError('submit: ' + cmd + ' is a server command, not a handler')); }
    var a = {};
    if (isObject(args)) { Object.keys(args).forEach(function (k) { a[k] = args[k]; }); }
    if (opts.id !== undefined) { a.id = opts.id; }
    if (opts.timeoutMs !== undefined) { a.timeout_ms = opts.timeoutMs; }
    if (opts.maxAttempts !== undefined) { a.max_attempts = opts.maxAttempts; }
    return new Promise(function (resolve, reject) {
      self._request(cmd, a).then(function (reply) {
        var task = reply.task;
        if (!isObject(task) || typeof task.id !== 'string') {
          reject(new TaskGateError('the reply has no task', { code: reply.code, error: 'bad_reply', reply: reply }));
          return;
        }
        if (opts.onSubmitted) { try { opts.onSubmitted(task, reply); } catch (e) { setTimeout(function () { throw e; }, 0); } }
        var watcher = { resolve: resolve, reject: reject, onProgress: opts.onProgress, task: task };
        // Final already (a duplicate id), or its done event came before this reply (SSE, long-poll): the done
        // event says only what changed, so it is merged into the reply's whole task.
        var known = FINAL[task.status] ? task : (hasOwn(self._doneCache, task.id) ? mergeTask(task, self._doneCache[task.id]) : null);
        if (known) { settleTask(watcher, known); return; }
        (self._watchers[task.id] = self._watchers[task.id] || []).push(watcher);
      }, reject);
    });
  };

  /** Resolves with the task (rejects with 404 not_found for an unknown id). */
  Client.prototype.status = function (id) {
    return this._request('status', { id: id }).then(function (reply) { return reply.task; });
  };

  /** Asks for cancellation; resolves with the task as it was then (the outcome comes as a done event). */
  Client.prototype.cancel = function (id) {
    return this._request('cancel', { id: id }).then(function (reply) { return reply.task; });
  };

  /** Resolves with the round-trip time in milliseconds. */
  Client.prototype.ping = function () {
    var t0 = (root.performance && root.performance.now) ? root.performance.now() : now();
    return this._request('ping').then(function () {
      var t1 = (root.performance && root.performance.now) ? root.performance.now() : now();
      return t1 - t0;
    });
  };

  /** Resolves with the handler names of the current generation. */
  Client.prototype.handlers = function () {
    return this._request('handlers').then(function (reply) { return reply.handlers; });
  };

  /** Resolves once connected (immediately if connected now). */
  Client.prototype.ready = function (timeoutMs) {
    var self = this;
    if (this._state === 'connected') { return Promise.resolve(this); }
    return new Promise(function (resolve, reject) {
      var timer = null;
      var off = self.on('state', function (d) {
        if (d.state === 'connected') { off(); clearTimeout(timer); resolve(self); }
        if (d.closed) { off(); clearTimeout(timer); reject(clientError('closed', 'the client was closed')); }
      });
      if (timeoutMs) {
        timer = setTimeout(function () { off(); reject(clientError('timeout', 'not connected within ' + timeoutMs + ' ms')); }, timeoutMs);
      }
    });
  };

  // ------------------------------------------------------------------ module object

  var TaskGate = {
    version: VERSION,
    transports: TRANSPORTS.slice(),
    Client: Client,
    TaskGateError: TaskGateError,
    /** TaskGate.connect(options) -> Client (already connecting unless {autoConnect: false}). */
    connect: function (options) { return new Client(options); },
    /** The cursor a client for this uid would resume from (sessionStorage by default), or null. */
    storedCursor: function (uid, storage) {
      var s = storage === undefined ? defaultStorage() : storage;
      if (!s) { return null; }
      try {
        var v = s.getItem('taskgate.cursor.' + uid);
        return v !== null && /^\d+$/.test(v) ? parseInt(v, 10) : null;
      } catch (e) { return null; }
    },
    isFinal: function (status) { return hasOwn(FINAL, status); }
  };
  return TaskGate;
});
