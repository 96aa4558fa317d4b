/* TaskGate demo page, built on the browser client library (taskgate.js, loaded before this file).
 * All protocol work (transports, fallback, reconnects, cursor, dedupe) happens in TaskGate.Client; this file is UI.
 * Server data is only ever written with textContent, never innerHTML.
 */
(function () {
  'use strict';

  var MAX_LOG = 200;
  var MAX_RESULT_CHARS = 4000;
  var MAX_ARGS_CHARS = 200;
  var UID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
  var TERMINAL = { succeeded: 1, failed: 1, cancelled: 1, timed_out: 1 };
  var FORCED = { poll: 'long-poll', 'long-poll': 'long-poll', longpoll: 'long-poll', sse: 'sse', websocket: 'websocket', ws: 'websocket' };
  var LOOKUP_EVERY_MS = 150;   // status lookups of tasks known only from events, spaced out (the server rate-limits)
  var MAX_LOOKUPS = 500;

  // ---------------------------------------------------------------- helpers

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function hasOwn(obj, key) { return Object.prototype.hasOwnProperty.call(obj, key); }

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
    var buf = window.crypto.getRandomValues(new Uint8Array(n));
    var out = '';
    for (var i = 0; i < n; i++) { out += chars.charAt(buf[i] % chars.length); }
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

  function isObject(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }

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

  // ---------------------------------------------------------------- state

  var params = new URLSearchParams(window.location.search);
  var forced = FORCED[(params.get('transport') || '').toLowerCase()] || null;
  var transports = forced ? [forced] : TaskGate.transports.slice();
  var initialTransport = transports.filter(function (t) {
    return t === 'websocket' ? !!window.WebSocket : t === 'sse' ? !!window.EventSource : true;
  })[0] || transports[0];

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

  var client = null;   // TaskGate.Client while connected (or trying to be)
  var uid = '';
  var retryAt = 0;
  var retryTick = null;
  var tasks = {};      // id -> card record; rec.task is the whole task, with the events' changes merged in
  var lookups = [];    // ids of tasks seen only in events, to ask `status` for (their cmd, args, timestamps)
  var lookingUp = {};  // id -> true while queued or asked
  var lookupTimer = null;

  // ---------------------------------------------------------------- log

  function log(kind, text) {
    var li = el('li', 'entry entry-' + kind);
    li.appendChild(el('time', 'entry-time', clock(new Date())));
    li.appendChild(el('span', 'entry-msg', text));
    ui.log.insertBefore(li, ui.log.firstChild);
    while (ui.log.childNodes.length > MAX_LOG) {
      ui.log.removeChild(ui.log.lastChild);
    }
  }

  // ---------------------------------------------------------------- UI state

  function setState(s) {
    ui.state.textContent = s;
    ui.state.setAttribute('data-state', s);
    document.body.setAttribute('data-conn-state', s);
  }

  function setTransport(t) {
    if (!t) { return; }
    ui.transport.textContent = t;
    ui.transport.setAttribute('data-transport', t);
  }

  function showCursor(n) {
    ui.cursor.textContent = String(n === null || n === undefined ? 0 : n);
  }

  function showRetry(text) {
    ui.retryText.textContent = text;
    ui.retry.hidden = false;
  }

  function hideRetry() {
    ui.retry.hidden = true;
    if (retryTick) { clearInterval(retryTick); retryTick = null; }
  }

  function setConnectButton() {
    ui.connect.textContent = client ? 'Disconnect' : 'Connect';
    ui.connect.className = client ? 'btn btn-secondary' : 'btn btn-primary';
    ui.uid.disabled = !!client;
  }

  // ---------------------------------------------------------------- connect

  function connect() {
    var u = ui.uid.value.trim();
    if (!UID_RE.test(u)) {
      log('error', 'Invalid uid "' + u + '": use 1-128 characters from A-Z a-z 0-9 . _ : @ -');
      ui.uid.focus();
      return;
    }
    ui.uid.value = u;
    uid = u;
    rememberUidInUrl(uid);
    var stored = TaskGate.storedCursor(uid);
    showCursor(stored);
    log('info', 'Connecting as "' + uid + '" via ' + transports.join(' \u2192 ') +
      (stored ? ' (resuming after seq ' + stored + ')' : ''));
    // replay 'all': a uid seen for the first time in this tab shows its retained tasks too.
    resetLookups();
    client = TaskGate.connect({ uid: uid, transports: transports, replay: 'all' });
    wire(client);
    setConnectButton();
  }

  function disconnect() {
    if (!client) { return; }
    var c = client;
    client = null;
    c.close();
    resetLookups();
    hideRetry();
    setState('disconnected');
    setConnectButton();
    log('info', 'Disconnected.');
  }

  function rememberUidInUrl(u) {
    try {
      var q = new URLSearchParams(window.location.search);
      q.set('uid', u);
      window.history.replaceState(null, '', window.location.pathname + '?' + q.toString() + window.location.hash);
    } catch (e) { /* ignore */ }
  }

  function wire(c) {
    c.on('state', function (s) {
      if (c !== client) { return; }
      setTransport(s.transport);
      setState(s.state);
      if (s.state === 'connected') {
        hideRetry();
        log('info', (s.upgraded ? 'Upgraded to ' : 'Connected (') + s.transport + (s.upgraded ? ' (from ' + s.from + ')' : ')') +
          ', cursor ' + (c.cursor || 0) + '.');
      } else if (s.state === 'disconnected' && s.retryIn !== undefined) {
        log('error', s.reason + ' \u2014 reconnecting in ' + formatDuration(s.retryIn));
        retryAt = Date.now() + s.retryIn;
        var tick = function () {
          showRetry('reconnecting in ' + (Math.max(0, retryAt - Date.now()) / 1000).toFixed(1) + ' s\u2026');
        };
        tick();
        if (retryTick) { clearInterval(retryTick); }
        retryTick = setInterval(tick, 100);
      } else if (s.state === 'connecting') {
        if (!ui.retry.hidden) { showRetry('reconnecting via ' + s.transport + '\u2026'); }
      }
    });
    c.on('error', function (e) {
      if (c !== client || e.reply) { return; }   // error replies are logged by the command that caused them
      if (e.upgrade) { log('warn', e.message); }
    });
    c.on('resumed', function (r) {
      if (c !== client) { return; }
      showCursor(c.cursor);
      if (!r.complete) {
        ui.resetNotice.hidden = false;
        log('warn', 'Server reset the event stream (our cursor ' + r.cursor + ', server seq ' + r.latest +
          '); some older events were dropped.');
      } else if (r.cursor > 0) {
        log('info', 'Resumed after seq ' + r.cursor + ' (server seq ' + r.latest + '): nothing missed.');
      }
    });
    c.on('progress', function (ev) { if (c === client) { handleEvent(ev); } });
    c.on('done', function (ev) { if (c === client) { handleEvent(ev); } });
    c.on('reply', function (msg) { if (c === client) { handleReply(msg); } });
  }

  // ------------------------------------------------------------ messages

  /**
   * An event says what changed (progress: status, progress, attempts; done: status, result, error): it is merged
   * into the task the page has (from the submitted or status reply). A task the page has not seen (submitted in
   * another tab or by a backend, or replayed) gets a card from the event, and its whole task is asked for.
   */
  function handleEvent(ev) {
    showCursor(ev.seq);
    var change = ev.task;
    if (!isObject(change) || typeof change.id !== 'string' || !change.id) { return; }
    var rec = upsertTask(change, false);
    var task = rec ? rec.task : change;
    var cmd = typeof task.cmd === 'string' && task.cmd ? task.cmd : '?';
    if (ev.type === 'done') {
      var detail = '';
      if (change.status === 'succeeded') {
        detail = ' \u2192 ' + truncate(safeJson(change.result, false), 160);
      } else if (change.error) {
        detail = ': ' + change.error;
      }
      log(change.status === 'succeeded' ? 'done' : 'fail',
        'done #' + ev.seq + ' ' + cmd + ' ' + change.id + ' ' + change.status + detail);
    } else if (ui.logProgress.checked) {
      log('progress', 'progress #' + ev.seq + ' ' + cmd + ' ' + change.id + ' ' + pct(change.progress) + '%');
    }
  }

  // ------------------------------------------------------------ tasks known only from events

  function lookUp(id) {
    if (hasOwn(lookingUp, id) || lookups.length >= MAX_LOOKUPS) { return; }
    lookingUp[id] = true;
    lookups.push(id);
    // A little later: the submitted reply of a task this page sent may be on its way (SSE, long-poll).
    if (!lookupTimer) { lookupTimer = setTimeout(nextLookup, 500); }
  }

  function nextLookup() {
    lookupTimer = null;
    if (!client || !lookups.length) { return; }
    var id = lookups.shift();
    var rec = tasks[id];
    if (rec && rec.whole) {
      delete lookingUp[id];
    } else {
      // The reply goes through handleReply (which merges it, without a log line); a task gone meanwhile stays as
      // its events showed it.
      client.status(id).then(function () { delete lookingUp[id]; }, function () { delete lookingUp[id]; });
    }
    if (lookups.length) { lookupTimer = setTimeout(nextLookup, LOOKUP_EVERY_MS); }
  }

  function resetLookups() {
    lookups = [];
    lookingUp = {};
    if (lookupTimer) { clearTimeout(lookupTimer); lookupTimer = null; }
  }

  function handleReply(msg) {
    var refText = msg.ref ? ' [' + msg.ref + ']' : '';
    var code = msg.code !== undefined && msg.code !== null ? msg.code + ' ' : '';
    switch (msg.type) {
      case 'submitted':
        if (isObject(msg.task)) { upsertTask(msg.task, true, true); }
        log('ok', code + (msg.duplicate ? 'duplicate \u2014 already known: ' : 'submitted ') +
          (msg.task ? msg.task.cmd + ' ' + msg.task.id + ' (' + msg.task.status + ')' : '') + refText);
        break;
      case 'cancelling':
        if (isObject(msg.task)) { upsertTask(msg.task, true); }
        log('ok', code + 'cancelling ' + (msg.task ? msg.task.id : '') + refText);
        break;
      case 'status':
        if (isObject(msg.task)) {
          upsertTask(msg.task, true);
          if (hasOwn(lookingUp, msg.task.id)) { break; }   // the page asked by itself: no log line
        }
        log('ok', code + 'status ' + (msg.task ? msg.task.id + ' ' + msg.task.status : '') + refText);
        break;
      case 'pong':
        break;   // logged with the round trip by ping()
      case 'error':
        break;   // logged by the command's promise
      default:
        log('info', 'reply ' + truncate(safeJson(msg, false), 300));
    }
  }

  function logCommandError(what, err) {
    if (err && err.task) { return; }   // a task outcome: its done event is logged already
    var text = err && err.error ? 'error ' + (err.code || '') + ' ' + err.error + (err.info ? ' \u2014 ' + err.info : '')
      : String(err && err.message || err);
    log('error', text + ' (for ' + what + ')' + (err && err.ref ? ' [' + err.ref + ']' : ''));
  }

  // ------------------------------------------------------------ sending

  function requireClient() {
    if (!client) {
      log('error', 'Not connected \u2014 press Connect first.');
      return false;
    }
    return true;
  }

  /** Any command, for the console and tests: TaskGateDemo.send('handlers'). */
  function send(cmd, args) {
    if (!requireClient()) { return null; }
    log('send', '\u2192 ' + cmd + (args ? ' ' + truncate(safeJson(args, false), 200) : ''));
    var p = client.send(cmd, args);
    p.catch(function (err) { logCommandError(cmd, err); });
    return p;
  }

  function readInt(input) {
    var raw = input.value.trim();
    if (/^-?\d+$/.test(raw)) { return parseInt(raw, 10); }
    return raw === '' ? undefined : raw; // let the server explain what is wrong
  }

  function submitTask(cmd) {
    if (!requireClient()) { return; }
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
    var id = ui.taskId.value.trim();
    if (id) { args.id = id; }
    var t = readInt(ui.timeoutMs);
    if (t !== undefined) { args.timeout_ms = t; }
    log('send', '\u2192 ' + cmd + ' ' + truncate(safeJson(args, false), 200));
    client.submit(cmd, args).catch(function (err) { logCommandError(cmd, err); });
  }

  function ping() {
    if (!requireClient()) { return; }
    client.ping().then(function (rtt) {
      ui.pingRtt.textContent = rtt.toFixed(1) + ' ms';
      log('ok', '200 pong in ' + rtt.toFixed(1) + ' ms');
    }, function (err) { logCommandError('ping', err); });
  }

  function cancelTask(id) {
    var rec = tasks[id];
    if (!requireClient()) { return; }
    if (rec) {
      rec.cancelling = true;
      renderTask(rec);
    }
    log('send', '\u2192 cancel ' + id);
    client.cancel(id).catch(function (err) {
      logCommandError('cancel', err);
      if (rec) {
        rec.cancelling = false;
        renderTask(rec);
      }
    });
  }

  // ------------------------------------------------------------ task cards

  function rank(status) {
    if (status === 'queued' || status === 'scheduled') { return 0; }
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
      whole: false,          // the task came from a reply (submitted, status, cancelling), not only from events
      seenRunning: NaN,      // when an event first said running / final (events carry no timestamps)
      seenFinished: NaN,
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

  /** Copies of a and b's fields over them: b wins. */
  function merged(a, b) {
    var out = {};
    var k;
    for (k in a) { if (hasOwn(a, k)) { out[k] = a[k]; } }
    for (k in b) { if (hasOwn(b, k)) { out[k] = b[k]; } }
    return out;
  }

  /**
   * Stores a task on its card: `whole` for a reply's task (submitted, status, cancelling: every field), else an
   * event's task (only what changed), which is merged into the stored one — never replaces it. Returns the record.
   */
  function upsertTask(task, whole, fromSubmit) {
    if (!isObject(task) || typeof task.id !== 'string' || !task.id) { return null; }
    var rec = tasks[task.id];
    var now = new Date().getTime();
    if (!rec) {
      rec = createCard(merged({}, task));
      rec.whole = !!whole;
      tasks[task.id] = rec;
      insertCard(rec);
      if (!whole) { lookUp(task.id); }
    } else {
      var oldRank = rank(rec.task.status);
      var newRank = rank(task.status);
      if (newRank < oldRank || (oldRank === 2 && newRank === 2 && fromSubmit)) {
        // A late reply (e.g. the "submitted" answer of a POST) must not undo newer events; it still brings the
        // fields the events do not carry (cmd, args, timestamps).
        if (whole) { rec.task = merged(task, rec.task); }
      } else {
        var change = merged({}, task);
        if (newRank === oldRank && newRank < 2 && typeof rec.task.progress === 'number' &&
            typeof change.progress === 'number' && change.progress < rec.task.progress) {
          change.progress = rec.task.progress;
        }
        rec.task = merged(rec.task, change);
      }
      if (whole) { rec.whole = true; }
      if (isNaN(rec.created)) { rec.created = parseTime(rec.task.createdAt); }
    }
    if (!whole && task.status === 'running' && isNaN(rec.seenRunning)) { rec.seenRunning = now; }
    if (!whole && hasOwn(TERMINAL, task.status) && isNaN(rec.seenFinished)) { rec.seenFinished = now; }
    renderTask(rec);
    return rec;
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
    // Events carry no timestamps: when the stored task lacks them, the times the page saw the events stand in.
    if (isNaN(started)) { started = rec.seenRunning; }
    if (isNaN(finished) && hasOwn(TERMINAL, t.status)) { finished = rec.seenFinished; }
    var now = new Date().getTime();
    var text;
    var runAt = parseTime(t.runAt);
    if (t.status === 'scheduled' && !isNaN(runAt)) {
      // Waiting for its runAt; past it (every worker busy) it says so until a worker takes it.
      text = runAt > now ? 'starts in ' + formatDuration(runAt - now) : 'due ' + formatDuration(now - runAt) + ' ago';
    } else if (t.status === 'queued' || t.status === 'scheduled') {
      text = t.status + ' ' + formatDuration(now - (isNaN(created) ? rec.firstSeen : created));
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
    setTransport(initialTransport);
    var initialUid = params.get('uid') && UID_RE.test(params.get('uid')) ? params.get('uid') : 'demo-' + randomSuffix(6);
    ui.uid.value = initialUid;
    uid = initialUid;
    showCursor(TaskGate.storedCursor(uid));
    setState('disconnected');
    setConnectButton();

    ui.connForm.addEventListener('submit', function (e) {
      e.preventDefault();
      if (client) { disconnect(); } else { connect(); }
    });

    ui.uid.addEventListener('input', function () {
      var u = ui.uid.value.trim();
      if (UID_RE.test(u)) { showCursor(TaskGate.storedCursor(u)); }
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

    document.querySelector('button[data-cmd="ping"]').addEventListener('click', ping);
    ui.retryNow.addEventListener('click', function () { if (client) { client.retryNow(); } });
    ui.resetDismiss.addEventListener('click', function () { ui.resetNotice.hidden = true; });
    ui.clearFinished.addEventListener('click', clearFinished);
    ui.clearLog.addEventListener('click', function () {
      while (ui.log.firstChild) { ui.log.removeChild(ui.log.firstChild); }
    });

    setInterval(tickElapsed, 250);

    log('info', 'Ready. Transport: ' + (forced ? forced + ' (forced)' : transports.join(' \u2192 ')) + '. Press Connect to start.');
    if (params.get('autoconnect') === '1' || params.get('autoconnect') === 'true') { connect(); }
  }

  // Exposed for debugging and tests; not needed by the page itself.
  window.TaskGateDemo = {
    connect: function () { if (!client) { connect(); } },
    disconnect: disconnect,
    send: send,
    client: function () { return client; },
    state: function () {
      return {
        state: client ? client.state : 'disconnected', transport: client ? client.transport : initialTransport,
        uid: uid, cursor: client ? client.cursor : TaskGate.storedCursor(uid)
      };
    }
  };

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
