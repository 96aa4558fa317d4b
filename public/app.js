/* TaskGate demo page.
 * Plain ES5 on purpose (no build step, works in old browsers); server data is
 * only ever written with textContent, never innerHTML.
 */
(function () {
  'use strict';

  var MAX_LOG = 200;
  var MAX_RESULT_CHARS = 4000;
  var MAX_ARGS_CHARS = 200;
  var BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];
  var POLL_TIMEOUT_S = 25;
  var HELLO_TIMEOUT_MS = 10000;
  var POST_TIMEOUT_MS = 20000;
  var UID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
  var TERMINAL = { succeeded: 1, failed: 1, cancelled: 1, timed_out: 1 };

  // ---------------------------------------------------------------- helpers

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function parseQuery(search) {
    var out = {};
    if (!search || search.length < 2) { return out; }
    var parts = search.substring(1).split('&');
    for (var i = 0; i < parts.length; i++) {
      if (!parts[i]) { continue; }
      var kv = parts[i].split('=');
      var k, v;
      try {
        k = decodeURIComponent(kv[0].replace(/\+/g, ' '));
        v = decodeURIComponent(kv.slice(1).join('=').replace(/\+/g, ' '));
      } catch (e) { continue; }
      out[k] = v;
    }
    return out;
  }

  function hasOwn(obj, key) { return Object.prototype.hasOwnProperty.call(obj, key); }

  function nowMs() {
    return (window.performance && typeof window.performance.now === 'function')
      ? window.performance.now() : new Date().getTime();
  }

  function pad(n, width) {
    var s = String(n);
    while (s.length < width) { s = '0' + s; }
    return s;
  }

  function clock(d) {
    return pad(d.getHours(), 2) + ':' + pad(d.getMinutes(), 2) + ':' +
      pad(d.getSeconds(), 2) + '.' + pad(d.getMilliseconds(), 3);
  }

  function randomSuffix(n) {
    var chars = 'abcdefghijkmnpqrstuvwxyz23456789';
    var out = '';
    var buf = null;
    if (window.crypto && window.crypto.getRandomValues && window.Uint8Array) {
      buf = new Uint8Array(n);
      window.crypto.getRandomValues(buf);
    }
    for (var i = 0; i < n; i++) {
      var r = buf ? buf[i] : Math.floor(Math.random() * 256);
      out += chars.charAt(r % chars.length);
    }
    return out;
  }

  function safeJson(value, pretty) {
    try {
      var s = JSON.stringify(value, null, pretty ? 2 : 0);
      return s === undefined ? String(value) : s;
    } catch (e) {
      return String(value);
    }
  }

  function truncate(s, max) {
    if (s.length <= max) { return s; }
    return s.substring(0, max) + '\u2026 (truncated, ' + s.length + ' chars total)';
  }

  function parseJson(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function isObject(v) { return v !== null && typeof v === 'object' && !(v instanceof Array); }

  function formatDuration(ms) {
    if (!(ms >= 0)) { ms = 0; }
    if (ms < 1000) { return Math.round(ms) + ' ms'; }
    if (ms < 60000) { return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s'; }
    var m = Math.floor(ms / 60000);
    var s = Math.floor((ms % 60000) / 1000);
    return m + ' min ' + pad(s, 2) + ' s';
  }

  function parseTime(iso) {
    if (!iso || typeof iso !== 'string') { return NaN; }
    return Date.parse(iso);
  }

  var storage = (function () {
    try {
      var s = window.sessionStorage;
      var probe = '__taskgate_probe__';
      s.setItem(probe, '1');
      s.removeItem(probe);
      return s;
    } catch (e) {
      return null;
    }
  })();

  function cursorKey(u) { return 'taskgate.cursor.' + u; }

  function loadCursor(u) {
    if (!storage) { return 0; }
    var v = parseInt(storage.getItem(cursorKey(u)), 10);
    return v >= 0 ? v : 0;
  }

  function saveCursor(u, n) {
    if (!storage || !u) { return; }
    try { storage.setItem(cursorKey(u), String(n)); } catch (e) { /* quota: ignore */ }
  }

  // ---------------------------------------------------------------- HTTP

  /* httpRequest(method, url, body, timeoutMs, cb(err, status, text)) -> {abort()}
   * Uses fetch when available, XMLHttpRequest otherwise. A 4xx/5xx answer is
   * NOT an error here: the caller gets the status and the body. */
  function httpRequest(method, url, body, timeoutMs, cb) {
    var finished = false;
    var timer = null;
    function finish(err, status, text) {
      if (finished) { return; }
      finished = true;
      if (timer) { clearTimeout(timer); }
      cb(err, status, text);
    }

    if (typeof window.fetch === 'function') {
      var ctrl = null;
      try { ctrl = window.AbortController ? new window.AbortController() : null; } catch (e) { ctrl = null; }
      var opts = { method: method, cache: 'no-store', credentials: 'same-origin', headers: {} };
      if (body !== null && body !== undefined) {
        opts.body = body;
        opts.headers['Content-Type'] = 'application/json';
      }
      if (ctrl) { opts.signal = ctrl.signal; }
      timer = setTimeout(function () {
        if (ctrl) { try { ctrl.abort(); } catch (e) { /* ignore */ } }
        finish('timed out');
      }, timeoutMs);
      window.fetch(url, opts).then(function (resp) {
        return resp.text().then(function (text) { finish(null, resp.status, text); });
      })['catch'](function (e) {
        finish((e && e.message) || 'network error');
      });
      return {
        abort: function () {
          finished = true;
          if (timer) { clearTimeout(timer); }
          if (ctrl) { try { ctrl.abort(); } catch (e) { /* ignore */ } }
        }
      };
    }

    var xhr = new XMLHttpRequest();
    xhr.open(method, url, true);
    if (body !== null && body !== undefined) {
      xhr.setRequestHeader('Content-Type', 'application/json');
    }
    xhr.onreadystatechange = function () {
      if (xhr.readyState !== 4) { return; }
      if (xhr.status === 0) { finish('network error'); return; }
      finish(null, xhr.status, xhr.responseText);
    };
    timer = setTimeout(function () {
      try { xhr.abort(); } catch (e) { /* ignore */ }
      finish('timed out');
    }, timeoutMs);
    xhr.send(body === undefined ? null : body);
    return {
      abort: function () {
        finished = true;
        if (timer) { clearTimeout(timer); }
        try { xhr.abort(); } catch (e) { /* ignore */ }
      }
    };
  }

  // ---------------------------------------------------------------- state

  var params = parseQuery(window.location.search);
  var transport = (params.transport === 'poll' || !window.WebSocket) ? 'long-poll' : 'websocket';

  var ui = {
    uid: $('uid'),
    connForm: $('conn-form'),
    connect: $('connect'),
    transport: $('transport'),
    state: $('state'),
    cursor: $('cursor'),
    retry: $('retry'),
    retryText: $('retry-text'),
    retryNow: $('retry-now'),
    resetNotice: $('reset-notice'),
    resetDismiss: $('reset-dismiss'),
    pingRtt: $('ping-rtt'),
    tasks: $('tasks'),
    tasksEmpty: $('tasks-empty'),
    clearFinished: $('clear-finished'),
    log: $('log'),
    logProgress: $('log-progress'),
    clearLog: $('clear-log'),
    taskId: $('task-id'),
    timeoutMs: $('timeout-ms')
  };

  var conn = {
    active: false,      // user wants to be connected
    gen: 0,             // bumped on every (re)connect/disconnect; stale callbacks compare
    state: 'disconnected',
    attempt: 0,         // consecutive failures, for backoff
    ws: null,
    ready: false,       // websocket: hello received
    acceptNext: false,  // after a reset: accept the next event whatever its seq
    helloTimer: null,
    retryTimer: null,
    retryTick: null,
    retryAt: 0,
    pollReq: null
  };

  var uid = '';
  var cursor = 0;
  var refCounter = 0;
  var pending = {};   // ref -> {cmd, sentAt, args, taskId}
  var tasks = {};     // id -> record

  // ---------------------------------------------------------------- log

  function log(kind, text) {
    var li = el('li', 'entry entry-' + kind);
    var t = el('time', 'entry-time', clock(new Date()));
    var msg = el('span', 'entry-msg', text);
    li.appendChild(t);
    li.appendChild(msg);
    ui.log.insertBefore(li, ui.log.firstChild);
    while (ui.log.childNodes.length > MAX_LOG) {
      ui.log.removeChild(ui.log.lastChild);
    }
  }

  // ---------------------------------------------------------------- UI state

  function setState(s) {
    conn.state = s;
    ui.state.textContent = s;
    ui.state.setAttribute('data-state', s);
    document.body.setAttribute('data-conn-state', s);
  }

  function setCursor(n) {
    cursor = n;
    ui.cursor.textContent = String(n);
    saveCursor(uid, n);
  }

  function showRetry(text) {
    ui.retryText.textContent = text;
    ui.retry.hidden = false;
  }

  function hideRetry() {
    ui.retry.hidden = true;
  }

  function showResetNotice() {
    ui.resetNotice.hidden = false;
  }

  function setConnectButton() {
    ui.connect.textContent = conn.active ? 'Disconnect' : 'Connect';
    ui.connect.className = conn.active ? 'btn btn-secondary' : 'btn btn-primary';
    ui.uid.disabled = conn.active;
  }

  function clearTimers() {
    if (conn.helloTimer) { clearTimeout(conn.helloTimer); conn.helloTimer = null; }
    if (conn.retryTimer) { clearTimeout(conn.retryTimer); conn.retryTimer = null; }
    if (conn.retryTick) { clearInterval(conn.retryTick); conn.retryTick = null; }
  }

  function teardownTransport() {
    clearTimers();
    if (conn.ws) {
      var ws = conn.ws;
      conn.ws = null;
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try { ws.close(1000, 'bye'); } catch (e) { /* ignore */ }
    }
    conn.ready = false;
    if (conn.pollReq) {
      conn.pollReq.abort();
      conn.pollReq = null;
    }
  }

  // ---------------------------------------------------------------- connect

  function connect() {
    var u = ui.uid.value.replace(/^\s+|\s+$/g, '');
    if (!UID_RE.test(u)) {
      log('error', 'Invalid uid "' + u + '": use 1-128 characters from A-Z a-z 0-9 . _ : @ -');
      ui.uid.focus();
      return;
    }
    ui.uid.value = u;
    uid = u;
    setCursor(loadCursor(uid));
    rememberUidInUrl(uid);
    conn.active = true;
    conn.attempt = 0;
    setConnectButton();
    log('info', 'Connecting as "' + uid + '" via ' + transport + (cursor > 0 ? ' (resuming after seq ' + cursor + ')' : ''));
    openTransport();
  }

  function disconnect() {
    conn.active = false;
    conn.gen++;
    teardownTransport();
    hideRetry();
    setState('disconnected');
    setConnectButton();
    log('info', 'Disconnected.');
  }

  function rememberUidInUrl(u) {
    if (!window.history || typeof window.history.replaceState !== 'function') { return; }
    var q = parseQuery(window.location.search);
    q.uid = u;
    var parts = [];
    for (var k in q) {
      if (hasOwn(q, k)) { parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(q[k])); }
    }
    try {
      window.history.replaceState(null, '', window.location.pathname + '?' + parts.join('&') + window.location.hash);
    } catch (e) { /* ignore */ }
  }

  function openTransport() {
    teardownTransport();
    conn.gen++;
    setState('connecting');
    if (conn.attempt > 0) { showRetry('reconnecting\u2026'); }
    if (transport === 'websocket') {
      openWebSocket();
    } else {
      poll(true);
    }
  }

  function scheduleReconnect(reason) {
    if (!conn.active) { return; }
    teardownTransport();
    conn.gen++;
    var myGen = conn.gen;
    setState('disconnected');
    var delay = BACKOFF_MS[Math.min(conn.attempt, BACKOFF_MS.length - 1)];
    conn.attempt++;
    if (reason) { log('error', reason + ' \u2014 reconnecting in ' + formatDuration(delay)); }
    conn.retryAt = new Date().getTime() + delay;
    var tick = function () {
      var left = Math.max(0, conn.retryAt - new Date().getTime());
      showRetry('reconnecting in ' + (left / 1000).toFixed(1) + ' s\u2026');
    };
    tick();
    conn.retryTick = setInterval(tick, 100);
    conn.retryTimer = setTimeout(function () {
      if (myGen !== conn.gen || !conn.active) { return; }
      conn.retryTimer = null;
      openTransport();
    }, delay);
  }

  function retryNow() {
    if (!conn.active || conn.state !== 'disconnected') { return; }
    openTransport();
  }

  function onConnected(via) {
    conn.attempt = 0;
    hideRetry();
    setState('connected');
    log('info', 'Connected (' + via + '), cursor ' + cursor + '.');
  }

  // ------------------------------------------------------------ websocket

  function wsUrl() {
    var scheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
    return scheme + window.location.host + '/ws?uid=' + encodeURIComponent(uid) + '&cursor=' + cursor;
  }

  function openWebSocket() {
    var myGen = conn.gen;
    var ws;
    try {
      ws = new window.WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect('WebSocket failed: ' + ((e && e.message) || e));
      return;
    }
    conn.ws = ws;
    conn.ready = false;
    conn.helloTimer = setTimeout(function () {
      if (myGen !== conn.gen) { return; }
      scheduleReconnect('No hello from server within ' + formatDuration(HELLO_TIMEOUT_MS));
    }, HELLO_TIMEOUT_MS);

    ws.onmessage = function (e) {
      if (myGen !== conn.gen) { return; }
      var msg = typeof e.data === 'string' ? parseJson(e.data) : null;
      if (!isObject(msg)) {
        log('error', 'Unreadable message from server: ' + truncate(String(e.data), 200));
        return;
      }
      if (msg.type === 'hello') {
        handleHello(msg);
      } else if (isEvent(msg)) {
        handleEvent(msg, false);
      } else {
        handleReply(msg);
      }
    };
    ws.onerror = function () {
      /* a close event always follows; reconnect happens there */
    };
    ws.onclose = function (e) {
      if (myGen !== conn.gen) { return; }
      conn.ws = null;
      var wasReady = conn.ready;
      conn.ready = false;
      var why = wasReady ? 'Connection lost' : 'Could not connect';
      scheduleReconnect(why + ' (close code ' + e.code + (e.reason ? ', ' + e.reason : '') + ')');
    };
  }

  function handleHello(msg) {
    if (conn.helloTimer) { clearTimeout(conn.helloTimer); conn.helloTimer = null; }
    conn.ready = true;
    var latest = typeof msg.seq === 'number' ? msg.seq : null;
    if (msg.reset || (latest !== null && latest < cursor)) {
      showResetNotice();
      log('warn', 'Server reset the event stream (latest seq ' + latest + ', our cursor ' + cursor + '); some older events were dropped.');
      conn.acceptNext = true;
      if (latest !== null && latest < cursor) { setCursor(0); }
    }
    onConnected('websocket' + (msg.admin ? ', admin' : '') + (latest !== null ? ', server seq ' + latest : ''));
  }

  // ------------------------------------------------------------ long-poll

  function poll(first) {
    var myGen = conn.gen;
    var timeout = first ? 0 : POLL_TIMEOUT_S;
    var url = '/poll?uid=' + encodeURIComponent(uid) + '&cursor=' + cursor + '&timeout=' + timeout;
    conn.pollReq = httpRequest('GET', url, null, (timeout + 15) * 1000, function (err, status, text) {
      if (myGen !== conn.gen || !conn.active) { return; }
      conn.pollReq = null;
      if (err) {
        scheduleReconnect('Poll failed: ' + err);
        return;
      }
      var data = parseJson(text);
      if (status !== 200 || !isObject(data) || !(data.events instanceof Array)) {
        var info = isObject(data) && data.info ? data.info : truncate(String(text || ''), 200);
        scheduleReconnect('Poll answered HTTP ' + status + (info ? ': ' + info : ''));
        return;
      }
      if (conn.state !== 'connected') { onConnected('long-poll'); }
      var reset = !!data.reset;
      if (reset) {
        showResetNotice();
        log('warn', 'Server reset the event stream (cursor ' + cursor + '); some older events were dropped.');
      }
      for (var i = 0; i < data.events.length; i++) {
        if (isObject(data.events[i])) { handleEvent(data.events[i], reset); }
      }
      if (typeof data.cursor === 'number' && data.cursor >= 0) { setCursor(data.cursor); }
      // Next round; setTimeout keeps the stack flat.
      setTimeout(function () {
        if (myGen === conn.gen && conn.active) { poll(false); }
      }, 0);
    });
  }

  // ------------------------------------------------------------ messages

  function isEvent(msg) {
    return (msg.type === 'progress' || msg.type === 'done') && typeof msg.seq === 'number';
  }

  function handleEvent(ev, force) {
    if (typeof ev.seq === 'number') {
      if (!force && !conn.acceptNext && ev.seq <= cursor) { return; } // duplicate
      conn.acceptNext = false;
      setCursor(ev.seq);
    }
    var task = ev.task;
    if (!isObject(task)) { return; }
    upsertTask(task);
    if (ev.type === 'done') {
      var detail = '';
      if (task.status === 'succeeded') {
        detail = ' \u2192 ' + truncate(safeJson(task.result, false), 160);
      } else if (task.error) {
        detail = ': ' + task.error;
      }
      log(task.status === 'succeeded' ? 'done' : 'fail',
        'done #' + ev.seq + ' ' + task.cmd + ' ' + task.id + ' ' + task.status + detail);
    } else if (ui.logProgress.checked) {
      log('progress', 'progress #' + ev.seq + ' ' + task.cmd + ' ' + task.id + ' ' + pct(task.progress) + '%');
    }
  }

  function handleReply(msg) {
    var ref = msg.ref;
    var p = (ref !== undefined && ref !== null && hasOwn(pending, ref)) ? pending[ref] : null;
    if (p) { delete pending[ref]; }
    var refText = ref ? ' [' + ref + ']' : '';
    var code = msg.code !== undefined && msg.code !== null ? msg.code + ' ' : '';

    switch (msg.type) {
      case 'submitted':
        if (isObject(msg.task)) { upsertTask(msg.task, true); }
        log('ok', code + (msg.duplicate ? 'duplicate \u2014 already known: ' : 'submitted ') +
          (msg.task ? msg.task.cmd + ' ' + msg.task.id + ' (' + msg.task.status + ')' : '') + refText);
        break;
      case 'pong':
        if (p) {
          var rtt = nowMs() - p.sentAt;
          ui.pingRtt.textContent = rtt.toFixed(1) + ' ms';
          log('ok', code + 'pong in ' + rtt.toFixed(1) + ' ms' + refText);
        } else {
          log('ok', code + 'pong' + refText);
        }
        break;
      case 'cancelling':
        if (isObject(msg.task)) { upsertTask(msg.task); }
        log('ok', code + 'cancelling ' + (msg.task ? msg.task.id : '') + refText);
        break;
      case 'status':
        if (isObject(msg.task)) { upsertTask(msg.task); }
        log('ok', code + 'status ' + (msg.task ? msg.task.id + ' ' + msg.task.status : '') + refText);
        break;
      case 'handlers':
        log('ok', code + 'handlers: ' + (msg.handlers instanceof Array ? msg.handlers.join(', ') : safeJson(msg.handlers)) + refText);
        break;
      case 'error':
        log('error', 'error ' + code + (msg.error || '') + (msg.info ? ' \u2014 ' + msg.info : '') +
          (p ? ' (for ' + p.cmd + ')' : '') + refText);
        if (p && p.cmd === 'cancel' && p.taskId && tasks[p.taskId]) {
          tasks[p.taskId].cancelling = false;
          renderTask(tasks[p.taskId]);
        }
        break;
      default:
        log('info', 'reply ' + truncate(safeJson(msg, false), 300));
    }
  }

  // ------------------------------------------------------------ sending

  function nextRef() {
    refCounter++;
    return 'r' + refCounter + '-' + randomSuffix(3);
  }

  function canSend() {
    if (!conn.active) {
      log('error', 'Not connected \u2014 press Connect first.');
      return false;
    }
    if (transport === 'websocket' && (!conn.ws || !conn.ready || conn.ws.readyState !== 1)) {
      log('error', 'Socket is not open yet (' + conn.state + ') \u2014 try again in a moment.');
      return false;
    }
    return true;
  }

  function send(cmd, args, extra) {
    if (!canSend()) { return null; }
    var ref = nextRef();
    var msg = { cmd: cmd, ref: ref };
    if (args) { msg.args = args; }
    var body = JSON.stringify(msg);
    pending[ref] = { cmd: cmd, sentAt: nowMs(), args: args, taskId: extra && extra.taskId };
    log('send', '\u2192 ' + cmd + (args ? ' ' + truncate(safeJson(args, false), 200) : '') + ' [' + ref + ']');

    if (transport === 'websocket') {
      try {
        conn.ws.send(body);
      } catch (e) {
        delete pending[ref];
        log('error', 'Send failed: ' + ((e && e.message) || e));
        return null;
      }
      return ref;
    }

    httpRequest('POST', '/poll?uid=' + encodeURIComponent(uid), body, POST_TIMEOUT_MS, function (err, status, text) {
      if (err) {
        if (hasOwn(pending, ref)) {
          var p = pending[ref];
          delete pending[ref];
          if (p.cmd === 'cancel' && p.taskId && tasks[p.taskId]) {
            tasks[p.taskId].cancelling = false;
            renderTask(tasks[p.taskId]);
          }
        }
        log('error', 'POST /poll failed for ' + cmd + ': ' + err + ' [' + ref + ']');
        return;
      }
      var reply = parseJson(text);
      if (!isObject(reply)) {
        delete pending[ref];
        log('error', 'HTTP ' + status + ' for ' + cmd + ' with an unreadable body: ' + truncate(String(text || ''), 200));
        return;
      }
      if (reply.ref === undefined || reply.ref === null) { reply.ref = ref; }
      if (reply.code === undefined || reply.code === null) { reply.code = status; }
      handleReply(reply);
    });
    return ref;
  }

  function readInt(input) {
    var raw = input.value.replace(/^\s+|\s+$/g, '');
    if (/^-?\d+$/.test(raw)) { return parseInt(raw, 10); }
    return raw === '' ? undefined : raw; // let the server explain what is wrong
  }

  function submitTask(cmd) {
    var args = {};
    if (cmd === 'sleep') {
      var ms = readInt($('sleep-ms'));
      if (ms !== undefined) { args.ms = ms; }
    } else if (cmd === 'primes') {
      var limit = readInt($('primes-limit'));
      if (limit !== undefined) { args.limit = limit; }
    } else if (cmd === 'echo') {
      args.text = $('echo-text').value;
    } else if (cmd === 'fail') {
      var m = $('fail-message').value;
      if (m) { args.message = m; }
    }
    var id = ui.taskId.value.replace(/^\s+|\s+$/g, '');
    if (id) { args.id = id; }
    var t = readInt(ui.timeoutMs);
    if (t !== undefined) { args.timeout_ms = t; }
    send(cmd, args);
  }

  function cancelTask(id) {
    var rec = tasks[id];
    if (rec) {
      rec.cancelling = true;
      renderTask(rec);
    }
    if (!send('cancel', { id: id }, { taskId: id }) && rec) {
      rec.cancelling = false;
      renderTask(rec);
    }
  }

  // ------------------------------------------------------------ task cards

  function rank(status) {
    if (status === 'queued') { return 0; }
    if (status === 'running') { return 1; }
    if (hasOwn(TERMINAL, status)) { return 2; }
    return -1;
  }

  function pct(p) {
    var n = typeof p === 'number' && isFinite(p) ? p : 0;
    return Math.max(0, Math.min(100, Math.round(n * 100)));
  }

  function createCard(task) {
    var card = el('div', 'task');
    card.setAttribute('data-id', task.id);

    var head = el('div', 'task-head');
    var cmd = el('span', 'task-cmd');
    var badge = el('span', 'badge task-status');
    var elapsed = el('span', 'task-elapsed');
    var cancel = el('button', 'btn btn-small btn-danger-outline task-cancel', 'Cancel');
    cancel.type = 'button';
    cancel.setAttribute('data-action', 'cancel');
    head.appendChild(cmd);
    head.appendChild(badge);
    head.appendChild(elapsed);
    head.appendChild(cancel);

    var idLine = el('div', 'task-id mono');
    var argsLine = el('div', 'task-args mono');

    var progRow = el('div', 'task-progress-row');
    var bar = document.createElement('progress');
    bar.className = 'task-progress';
    bar.max = 100;
    bar.value = 0;
    var pctText = el('span', 'task-pct mono', '0%');
    progRow.appendChild(bar);
    progRow.appendChild(pctText);

    var result = el('pre', 'task-result');
    result.hidden = true;
    var error = el('div', 'task-error');
    error.hidden = true;

    card.appendChild(head);
    card.appendChild(idLine);
    card.appendChild(argsLine);
    card.appendChild(progRow);
    card.appendChild(result);
    card.appendChild(error);

    cancel.addEventListener('click', function () { cancelTask(task.id); });

    return {
      id: task.id,
      task: task,
      created: parseTime(task.createdAt),
      firstSeen: new Date().getTime(),
      cancelling: false,
      el: card,
      cmd: cmd, badge: badge, elapsed: elapsed, cancel: cancel,
      idLine: idLine, argsLine: argsLine, bar: bar, pctText: pctText,
      result: result, error: error
    };
  }

  function insertCard(rec) {
    // Newest on top, ordered by createdAt (replayed events can arrive late).
    var t = isNaN(rec.created) ? rec.firstSeen : rec.created;
    var node = ui.tasks.firstChild;
    while (node) {
      var other = tasks[node.getAttribute('data-id')];
      var ot = other ? (isNaN(other.created) ? other.firstSeen : other.created) : Infinity;
      if (ot < t) { break; }
      node = node.nextSibling;
    }
    ui.tasks.insertBefore(rec.el, node);
    ui.tasksEmpty.hidden = true;
  }

  function upsertTask(task, fromSubmit) {
    if (!isObject(task) || typeof task.id !== 'string' || !task.id) { return; }
    var rec = tasks[task.id];
    if (!rec) {
      rec = createCard(task);
      tasks[task.id] = rec;
      insertCard(rec);
    } else {
      var oldRank = rank(rec.task.status);
      var newRank = rank(task.status);
      // A late reply (e.g. the "submitted" answer of a POST) must not undo newer events.
      if (newRank < oldRank) { return; }
      if (newRank === oldRank && newRank < 2 && typeof rec.task.progress === 'number' &&
          typeof task.progress === 'number' && task.progress < rec.task.progress) {
        task.progress = rec.task.progress;
      }
      if (oldRank === 2 && newRank === 2 && fromSubmit) { return; }
      rec.task = task;
      if (isNaN(rec.created)) { rec.created = parseTime(task.createdAt); }
    }
    renderTask(rec);
  }

  function renderTask(rec) {
    var t = rec.task;
    var status = typeof t.status === 'string' ? t.status : 'unknown';
    var terminal = hasOwn(TERMINAL, status);
    rec.el.setAttribute('data-status', status);
    rec.cmd.textContent = t.cmd || '?';
    rec.badge.textContent = status.replace('_', ' ');
    rec.badge.className = 'badge task-status status-' + status.replace(/[^a-z_]/g, '');
    rec.idLine.textContent = t.id;
    rec.idLine.title = 'task id';

    var argsText = isObject(t.args) && !isEmptyObject(t.args) ? 'args ' + truncate(safeJson(t.args, false), MAX_ARGS_CHARS) : '';
    rec.argsLine.textContent = argsText;
    rec.argsLine.hidden = !argsText;

    var p = status === 'succeeded' ? 100 : pct(t.progress);
    rec.bar.value = p;
    rec.bar.setAttribute('aria-label', 'progress ' + p + '%');
    rec.pctText.textContent = p + '%';

    if (terminal && t.result !== null && t.result !== undefined) {
      rec.result.textContent = truncate(safeJson(t.result, true), MAX_RESULT_CHARS);
      rec.result.hidden = false;
    } else {
      rec.result.hidden = true;
    }
    if (t.error) {
      rec.error.textContent = String(t.error);
      rec.error.hidden = false;
    } else {
      rec.error.hidden = true;
    }

    rec.cancel.hidden = terminal;
    rec.cancel.disabled = rec.cancelling;
    rec.cancel.textContent = rec.cancelling ? 'Cancelling\u2026' : 'Cancel';
    updateElapsed(rec);
  }

  function isEmptyObject(o) {
    for (var k in o) { if (hasOwn(o, k)) { return false; } }
    return true;
  }

  function updateElapsed(rec) {
    var t = rec.task;
    var created = parseTime(t.createdAt);
    var started = parseTime(t.startedAt);
    var finished = parseTime(t.finishedAt);
    var now = new Date().getTime();
    var text;
    if (t.status === 'queued') {
      text = 'queued ' + formatDuration(now - (isNaN(created) ? rec.firstSeen : created));
    } else if (t.status === 'running') {
      text = 'running ' + formatDuration(now - (isNaN(started) ? (isNaN(created) ? rec.firstSeen : created) : started));
    } else if (!isNaN(finished)) {
      var from = isNaN(started) ? created : started;
      text = (isNaN(from) ? '' : 'took ' + formatDuration(finished - from));
    } else {
      text = '';
    }
    if (rec.elapsed.textContent !== text) { rec.elapsed.textContent = text; }
  }

  function tickElapsed() {
    for (var id in tasks) {
      if (hasOwn(tasks, id) && !hasOwn(TERMINAL, tasks[id].task.status)) {
        updateElapsed(tasks[id]);
      }
    }
  }

  function clearFinished() {
    var removed = 0;
    for (var id in tasks) {
      if (hasOwn(tasks, id) && hasOwn(TERMINAL, tasks[id].task.status)) {
        var node = tasks[id].el;
        if (node.parentNode) { node.parentNode.removeChild(node); }
        delete tasks[id];
        removed++;
      }
    }
    ui.tasksEmpty.hidden = ui.tasks.firstChild !== null;
    if (removed) { log('info', 'Removed ' + removed + ' finished task card' + (removed === 1 ? '' : 's') + '.'); }
  }

  // ------------------------------------------------------------ wiring

  function init() {
    ui.transport.textContent = transport;
    ui.transport.setAttribute('data-transport', transport);
    var initialUid = params.uid && UID_RE.test(params.uid) ? params.uid : 'demo-' + randomSuffix(6);
    ui.uid.value = initialUid;
    uid = initialUid;
    setCursor(loadCursor(uid));
    setState('disconnected');
    setConnectButton();

    ui.connForm.addEventListener('submit', function (e) {
      e.preventDefault();
      if (conn.active) { disconnect(); } else { connect(); }
    });

    ui.uid.addEventListener('input', function () {
      var u = ui.uid.value.replace(/^\s+|\s+$/g, '');
      if (UID_RE.test(u)) { ui.cursor.textContent = String(loadCursor(u)); }
    });

    var forms = document.querySelectorAll('form.cmd-form');
    for (var i = 0; i < forms.length; i++) {
      (function (form) {
        form.addEventListener('submit', function (e) {
          e.preventDefault();
          submitTask(form.getAttribute('data-form'));
        });
      })(forms[i]);
    }

    var pingBtn = document.querySelector('button[data-cmd="ping"]');
    pingBtn.addEventListener('click', function () { send('ping'); });

    ui.retryNow.addEventListener('click', retryNow);
    ui.resetDismiss.addEventListener('click', function () { ui.resetNotice.hidden = true; });
    ui.clearFinished.addEventListener('click', clearFinished);
    ui.clearLog.addEventListener('click', function () {
      while (ui.log.firstChild) { ui.log.removeChild(ui.log.firstChild); }
    });

    window.addEventListener('online', function () {
      if (conn.active && conn.state === 'disconnected') {
        log('info', 'Network is back.');
        retryNow();
      }
    });

    setInterval(tickElapsed, 250);

    log('info', 'Ready. Transport: ' + transport + '. Press Connect to start.');
    if (params.autoconnect === '1' || params.autoconnect === 'true') { connect(); }
  }

  // Exposed for debugging and tests; not needed by the page itself.
  window.TaskGateDemo = {
    connect: function () { if (!conn.active) { connect(); } },
    disconnect: function () { if (conn.active) { disconnect(); } },
    send: send,
    state: function () { return { state: conn.state, transport: transport, uid: uid, cursor: cursor }; }
  };

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
