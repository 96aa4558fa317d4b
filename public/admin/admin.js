/* TaskGate admin dashboard: talks to the REST admin API (/api/v1, see openapi.yaml) with the admin token as a
 * Bearer header. Plain script, no dependencies; server data is only written with textContent.
 *
 *   counters   GET /api/v1/stats every second (read-only fallback: GET /healthz, which needs no token)
 *   chart      tasks finished per second = deltas of stats.pool.finished between two polls
 *   handlers   GET /api/v1/handlers, merged with stats.pool.handlers; POST /api/v1/reload
 *   tasks      GET /api/v1/tasks?uid=&status=&limit= (the handler filter is applied here: the API has none)
 *   detail     GET /api/v1/tasks/{id}; POST /api/v1/tasks/{id}/cancel; retry = POST /api/v1/tasks (same cmd/args/uid)
 *   schedules  GET /api/v1/schedules with the task list (the panel is hidden when the server answers 404: a server
 *              from before schedules; asked again every SCHEDULES_RETRY_MS)
 */
(function () {
  'use strict';

  var TOKEN_KEY = 'taskgate.admin.token';
  var STATS_EVERY_MS = 1000;
  var TASKS_EVERY_MS = 2000;
  var SCHEDULES_RETRY_MS = 60000;
  var CHART_WINDOW_S = 120;
  var FINAL = { succeeded: 1, failed: 1, cancelled: 1, timed_out: 1 };
  var OUTCOMES = ['succeeded', 'failed', 'cancelled', 'timed_out'];
  var COLORS = { succeeded: '#1d7a46', failed: '#b42318', cancelled: '#8a8f99', timed_out: '#c26a0a' };
  var TRANSPORTS = ['websocket', 'sse', 'long-poll'];

  function $(id) { return document.getElementById(id); }
  function hasOwn(o, k) { return Object.prototype.hasOwnProperty.call(o, k); }
  function el(tag, className, text) {
    var n = document.createElement(tag);
    if (className) { n.className = className; }
    if (text !== undefined && text !== null) { n.textContent = String(text); }
    return n;
  }
  function setText(id, text) {
    var n = $(id);
    var s = String(text);
    if (n.textContent !== s) { n.textContent = s; }
  }
  function pretty(v) {
    if (v === null || v === undefined) { return '\u2013'; }
    try { return JSON.stringify(v, null, 2); } catch (e) { return String(v); }
  }
  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function clock(d) { return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()); }
  function shortTime(iso) {
    var t = Date.parse(iso);
    if (isNaN(t)) { return '\u2013'; }
    var d = new Date(t);
    var today = new Date();
    var day = d.toDateString() === today.toDateString() ? '' : d.toISOString().slice(0, 10) + ' ';
    return day + clock(d);
  }
  function duration(task) {
    var from = Date.parse(task.startedAt || task.createdAt);
    var to = task.finishedAt ? Date.parse(task.finishedAt) : (task.status === 'running' ? Date.now() : NaN);
    if (isNaN(from) || isNaN(to)) { return '\u2013'; }
    var ms = Math.max(0, to - from);
    return ms < 1000 ? ms + ' ms' : ms < 60000 ? (ms / 1000).toFixed(1) + ' s' : Math.floor(ms / 60000) + ' min ' + pad(Math.floor(ms % 60000 / 1000)) + ' s';
  }
  function storage() {
    try { return window.sessionStorage; } catch (e) { return null; }
  }

  // ------------------------------------------------------------------ state

  var token = (storage() && storage().getItem(TOKEN_KEY)) || '';
  var auth = 'unknown';         // open | ok | required | rejected | forbidden | offline
  var authInfo = '';
  var handlerInfo = [];          // [{name, description, timeoutMs}]
  var lastStats = null;
  var samples = [];              // [{t, dt, rates: {status: per second}}]
  var prevFinished = null;
  var prevT = 0;
  var selectedId = null;
  var selectedTask = null;
  var rows = {};                 // task id -> <tr>
  var tasksBusy = null;           // the list request in flight (a Promise), if any
  var tasksAgain = false;        // filters changed meanwhile: fetch again when it is done
  var schedulesBusy = false;     // a schedules request is in flight
  var schedulesMissingAt = 0;    // when the server last answered 404 for /api/v1/schedules (0: it has them)

  // ------------------------------------------------------------------ HTTP

  /**
   * api(method, path, body, unknownPathOk) -> {status, ok, body}; never throws for HTTP errors, updates the auth
   * state. With unknownPathOk a 404 leaves the auth state as it is (an older server without that path may answer
   * 404 before it looks at the token).
   */
  function api(method, path, body, unknownPathOk) {
    var headers = { Accept: 'application/json' };
    if (token) { headers.Authorization = 'Bearer ' + token; }
    if (body !== undefined) { headers['Content-Type'] = 'application/json'; }
    return fetch(path, {
      method: method, headers: headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var json = null;
        try { json = JSON.parse(text); } catch (e) { json = null; }
        var info = json && json.info ? json.info : '';
        if (resp.status === 401) {
          setAuth(token ? 'rejected' : 'required', info);
        } else if (resp.status === 403 && json && json.error === 'forbidden') {
          setAuth('forbidden', info);
        } else if (resp.status < 500 && !(unknownPathOk && resp.status === 404)) {
          setAuth(token ? 'ok' : 'open', '');
        }
        return { status: resp.status, ok: resp.status >= 200 && resp.status < 300, body: json, text: text };
      });
    }, function (e) {
      setAuth('offline', (e && e.message) || 'network error');
      return { status: 0, ok: false, body: null, text: '' };
    });
  }

  function errorText(r) {
    if (!r.status) { return 'the server does not answer'; }
    var b = r.body || {};
    return r.status + ' ' + (b.error || 'error') + (b.info ? ' \u2014 ' + b.info : '');
  }

  // ------------------------------------------------------------------ auth state

  function canAct() { return auth === 'open' || auth === 'ok'; }

  function setAuth(state, info) {
    if (state === auth && info === authInfo) { return; }
    var was = auth;
    auth = state;
    authInfo = info || '';
    document.body.setAttribute('data-auth', state);
    var pill = $('auth-status');
    pill.setAttribute('data-auth', state);
    pill.textContent = {
      open: 'open: no token needed (loopback)',
      ok: 'admin token accepted',
      required: 'read-only: token required',
      rejected: 'read-only: wrong token',
      forbidden: 'forbidden',
      offline: 'server offline',
      unknown: 'checking\u2026'
    }[state] || state;
    var banner = $('error');
    var text = '';
    if (state === 'required') {
      text = '401 unauthorized: this server requires the admin token (--admin-token). Enter it above; until then ' +
        'the dashboard is read-only and shows the public /healthz counters.';
    } else if (state === 'rejected') {
      text = '401 unauthorized: the server refused this token' + (authInfo ? ' (' + authInfo + ')' : '') +
        '. Enter the right one above.';
    } else if (state === 'forbidden') {
      text = '403 forbidden: ' + (authInfo || 'admin rights required') +
        '. Start the server with --admin-token and enter the token here.';
    } else if (state === 'offline') {
      text = 'The server does not answer (' + authInfo + '); retrying every second.';
    }
    banner.textContent = text;
    banner.hidden = !text;
    var buttons = document.querySelectorAll('[data-needs-admin]');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].title = canAct() ? '' : 'needs admin access (enter the admin token)';
    }
    updateActionButtons();
    if (canAct() && !(was === 'open' || was === 'ok')) {
      loadHandlers();
      refreshTasks();
      refreshSchedules();
    }
  }

  function updateActionButtons() {
    $('reload').disabled = !canAct();
    var t = selectedTask;
    $('d-cancel').disabled = !canAct() || !t || hasOwn(FINAL, t.status);
    $('d-retry').disabled = !canAct() || !t;
  }

  // ------------------------------------------------------------------ counters and chart

  function statsLoop() {
    var started = Date.now();
    api('GET', '/api/v1/stats').then(function (r) {
      if (r.ok && r.body) {
        renderStats(r.body);
        return null;
      }
      if (r.status === 401 || r.status === 403) { return healthFallback(); }
      return null;
    }).then(function () {
      if (selectedId && selectedTask && !hasOwn(FINAL, selectedTask.status)) { refreshDetail(); }
    }).catch(function () { /* shown in the banner */ }).then(function () {
      setTimeout(statsLoop, Math.max(100, STATS_EVERY_MS - (Date.now() - started)));
    });
  }

  function healthFallback() {
    return fetch('/healthz', { cache: 'no-store' }).then(function (resp) { return resp.json(); }).then(function (h) {
      TRANSPORTS.forEach(function (t) { setText('conn-' + t, '\u2013'); });
      setText('queued', h.queued);
      setText('running', h.running);
      setText('generation', h.generation);
      setText('queue-limit', 'from /healthz');
      setText('workers', h.connections + ' connections in all');
      setText('updated', 'updated ' + clock(new Date()));
      OUTCOMES.forEach(function (k) { setText('fin-' + k, '\u2013'); });
      lastStats = null;
      handlerInfo = [];
      renderHandlers();
    }, function () { /* offline: the banner says so */ });
  }

  function renderStats(s) {
    lastStats = s;
    var conns = s.connections || {};
    TRANSPORTS.forEach(function (t) { setText('conn-' + t, hasOwn(conns, t) ? conns[t] : 0); });
    var pool = s.pool || {};
    setText('queued', pool.queued);
    setText('queue-limit', 'limit ' + pool.queueLimit);
    setText('running', pool.running);
    setText('workers', 'of ' + pool.workers + ' workers');
    setText('generation', s.generation);
    setText('updated', 'updated ' + clock(new Date()));
    var finished = pool.finished || {};
    OUTCOMES.forEach(function (k) { setText('fin-' + k, finished[k] || 0); });
    addSample(finished);
    renderHandlers();
  }

  function addSample(finished) {
    var t = Date.now();
    if (prevFinished) {
      var dt = Math.max(0.001, (t - prevT) / 1000);
      var rates = {};
      OUTCOMES.forEach(function (k) {
        var now = finished[k] || 0;
        var before = prevFinished[k] || 0;
        var delta = now >= before ? now - before : now;   // a smaller counter: the server restarted
        rates[k] = delta / dt;
      });
      samples.push({ t: t, dt: dt, rates: rates });
      while (samples.length && samples[0].t < t - CHART_WINDOW_S * 1000) { samples.shift(); }
    }
    prevFinished = finished;
    prevT = t;
    drawChart();
  }

  function drawChart() {
    var canvas = $('chart');
    var ratio = window.devicePixelRatio || 1;
    var w = canvas.clientWidth || 640;
    var h = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    var ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var left = 36;
    var right = 8;
    var top = 8;
    var bottom = 20;
    var pw = w - left - right;
    var ph = h - top - bottom;
    var max = 0;
    samples.forEach(function (s) {
      var sum = 0;
      OUTCOMES.forEach(function (k) { sum += s.rates[k]; });
      max = Math.max(max, sum);
    });
    var yMax = max <= 1 ? 1 : max <= 5 ? 5 : Math.ceil(max / 10) * 10;
    // grid and labels
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = '#5a6478';
    ctx.strokeStyle = '#e6e9f0';
    ctx.lineWidth = 1;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    [0, 0.5, 1].forEach(function (f) {
      var y = top + ph - f * ph;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y) + 0.5);
      ctx.lineTo(left + pw, Math.round(y) + 0.5);
      ctx.stroke();
      var v = yMax * f;
      ctx.fillText(v % 1 ? v.toFixed(1) : String(v), left - 5, y);
    });
    ctx.textBaseline = 'top';
    ctx.textAlign = 'left';
    ctx.fillText('\u2212' + CHART_WINDOW_S / 60 + ' min', left, top + ph + 5);
    ctx.textAlign = 'right';
    ctx.fillText('now  (tasks/s)', left + pw, top + ph + 5);
    // stacked bars
    var now = Date.now();
    var x0 = now - CHART_WINDOW_S * 1000;
    samples.forEach(function (s) {
      var xEnd = left + (s.t - x0) / (CHART_WINDOW_S * 1000) * pw;
      var bw = Math.max(1.5, s.dt / CHART_WINDOW_S * pw - 1);
      var y = top + ph;
      OUTCOMES.forEach(function (k) {
        var v = s.rates[k];
        if (!v) { return; }
        var bh = v / yMax * ph;
        ctx.fillStyle = COLORS[k];
        ctx.fillRect(xEnd - bw, y - bh, bw, bh);
        y -= bh;
      });
    });
    var latest = samples.length ? samples[samples.length - 1].rates : null;
    if (latest) {
      var total = OUTCOMES.reduce(function (a, k) { return a + latest[k]; }, 0);
      canvas.setAttribute('aria-label', 'tasks finished per second; latest ' + total.toFixed(1) + '/s');
    }
  }

  // ------------------------------------------------------------------ handlers and reload

  function loadHandlers() {
    return api('GET', '/api/v1/handlers').then(function (r) {
      if (!r.ok || !r.body) { return; }
      handlerInfo = r.body.handlers || [];
      var select = $('f-handler');
      var keep = select.value;
      while (select.options.length > 1) { select.remove(1); }
      handlerInfo.forEach(function (h) {
        var o = el('option', null, h.name);
        o.value = h.name;
        select.appendChild(o);
      });
      if (keep) {
        if (!handlerInfo.some(function (h) { return h.name === keep; })) {
          var o = el('option', null, keep);
          o.value = keep;
          select.appendChild(o);
        }
        select.value = keep;
      }
      renderHandlers();
    });
  }

  function renderHandlers() {
    var load = (lastStats && lastStats.pool && lastStats.pool.handlers) || {};
    var names = handlerInfo.map(function (h) { return h.name; });
    Object.keys(load).forEach(function (n) { if (names.indexOf(n) < 0) { names.push(n); } });
    names.sort();
    var tbody = $('handlers');
    var byName = {};
    handlerInfo.forEach(function (h) { byName[h.name] = h; });
    var existing = {};
    Array.prototype.forEach.call(tbody.rows, function (tr) { existing[tr.getAttribute('data-handler')] = tr; });
    names.forEach(function (name) {
      var tr = existing[name];
      if (!tr) {
        tr = el('tr');
        tr.setAttribute('data-handler', name);
        var c0 = el('td');
        c0.appendChild(el('span', 'mono', name));
        c0.appendChild(el('div', 'hint'));
        tr.appendChild(c0);
        tr.appendChild(el('td', 'num queued'));
        tr.appendChild(el('td', 'num running'));
        tr.appendChild(el('td', 'num timeout'));
      }
      delete existing[name];
      tbody.appendChild(tr);
      var l = load[name] || { queued: 0, running: 0 };
      var info = byName[name];
      tr.cells[0].lastChild.textContent = info ? info.description : '(not in the current generation)';
      tr.cells[1].textContent = String(l.queued || 0);
      tr.cells[2].textContent = String(l.running || 0);
      tr.cells[3].textContent = info ? (info.timeoutMs / 1000) + ' s' : '\u2013';
    });
    Object.keys(existing).forEach(function (n) { tbody.removeChild(existing[n]); });
    if (!names.length) {
      var tr = el('tr');
      tr.setAttribute('data-handler', '');
      var td = el('td', 'hint', canAct() ? 'loading\u2026' : 'needs admin access');
      td.colSpan = 4;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
  }

  function reload() {
    if (!canAct()) { return; }
    var out = $('reload-result');
    $('reload').disabled = true;
    api('POST', '/api/v1/reload').then(function (r) {
      out.hidden = false;
      if (!r.ok) {
        out.setAttribute('data-kind', 'error');
        out.textContent = 'Reload failed: ' + errorText(r);
        return;
      }
      var b = r.body;
      var list = function (a) { return a && a.length ? a.join(', ') : '\u2013'; };
      out.removeAttribute('data-kind');
      out.textContent = 'Reloaded at ' + clock(new Date()) + ': generation ' + b.generation +
        ' \u00b7 added: ' + list(b.added) + ' \u00b7 changed: ' + list(b.changed) + ' \u00b7 removed: ' + list(b.removed);
      out.setAttribute('data-generation', String(b.generation));
      setText('generation', b.generation);
      refreshSchedules();
      return loadHandlers();
    }).then(updateActionButtons, updateActionButtons);
  }

  // ------------------------------------------------------------------ tasks

  function filters() {
    var limit = parseInt($('f-limit').value, 10);
    if (!(limit >= 1 && limit <= 1000)) { limit = 50; }
    return { uid: $('f-uid').value.trim(), status: $('f-status').value, handler: $('f-handler').value, limit: limit };
  }

  /** Fetches the task list for the current filters; a call while one is in flight runs again right after it. */
  function refreshTasks() {
    if (tasksBusy) {
      tasksAgain = true;
      return tasksBusy;
    }
    if (auth !== 'unknown' && !canAct()) { clearTasks('Enter the admin token to see tasks.'); return Promise.resolve(); }
    var finish = function () {
      tasksBusy = null;
      if (tasksAgain) {
        tasksAgain = false;
        return refreshTasks();
      }
      return null;
    };
    tasksBusy = fetchTasks().then(finish, finish);
    return tasksBusy;
  }

  function fetchTasks() {
    var f = filters();
    var q = new URLSearchParams();
    if (f.uid) { q.set('uid', f.uid); }
    if (f.status) { q.set('status', f.status); }
    // The API cannot filter by handler: fetch more and filter here.
    q.set('limit', String(f.handler ? 1000 : f.limit));
    return api('GET', '/api/v1/tasks?' + q.toString()).then(function (r) {
      if (!r.ok || !r.body) {
        if (r.status === 400) { clearTasks('Filter refused: ' + errorText(r)); }
        return;
      }
      var list = r.body.tasks || [];
      if (f.handler) { list = list.filter(function (t) { return t.cmd === f.handler; }).slice(0, f.limit); }
      renderTasks(list);
      setText('tasks-count', list.length + ' task' + (list.length === 1 ? '' : 's') + ', newest first' +
        (f.handler ? ' (handler filtered here, among the newest 1000)' : ''));
    });
  }

  function clearTasks(message) {
    var tbody = $('tasks');
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    rows = {};
    $('tasks-empty').hidden = true;
    setText('tasks-count', message || '');
  }

  function renderTasks(list) {
    var tbody = $('tasks');
    var keep = {};
    list.forEach(function (t) {
      keep[t.id] = true;
      var tr = rows[t.id];
      if (!tr) {
        tr = el('tr', 'task-row');
        tr.setAttribute('data-id', t.id);
        var idCell = el('td');
        var b = el('button', 'linkish', t.id);
        b.type = 'button';
        b.setAttribute('data-action', 'select');
        b.addEventListener('click', function () { select(t.id); });
        idCell.appendChild(b);
        tr.appendChild(idCell);
        tr.appendChild(el('td', 'mono cmd'));
        tr.appendChild(el('td', 'uid'));
        var st = el('td');
        st.appendChild(el('span', 'badge'));
        st.appendChild(el('div', 'hint run-at'));
        tr.appendChild(st);
        tr.appendChild(el('td', 'num priority'));
        tr.appendChild(el('td', 'num'));
        tr.appendChild(el('td', 'num'));
        tr.appendChild(el('td', 'mono'));
        tr.appendChild(el('td', 'num'));
        rows[t.id] = tr;
      }
      tr.setAttribute('data-status', t.status);
      tr.setAttribute('data-cmd', t.cmd);
      tr.classList.toggle('selected', t.id === selectedId);
      tr.cells[1].textContent = t.cmd;
      tr.cells[2].textContent = t.uid === null ? '\u2013' : t.uid;
      var badge = tr.cells[3].firstChild;
      badge.textContent = t.status.replace('_', ' ');
      badge.className = 'badge status-' + t.status;
      var runAt = tr.cells[3].lastChild;   // when a scheduled task is due
      var due = t.status === 'scheduled' && t.runAt ? t.runAt : '';
      runAt.textContent = due ? 'at ' + shortTime(due) : '';
      runAt.title = due;
      runAt.hidden = !due;
      tr.setAttribute('data-run-at', due);
      var prio = typeof t.priority === 'number' ? String(t.priority) : '\u2013';   // absent on older servers
      tr.setAttribute('data-priority', prio);
      tr.cells[4].textContent = prio;
      tr.cells[5].textContent = Math.round((t.progress || 0) * 100) + '%';
      tr.cells[6].textContent = String(t.attempts);
      tr.cells[7].textContent = shortTime(t.createdAt);
      tr.cells[8].textContent = duration(t);
      tbody.appendChild(tr);   // moves it into list order
      if (t.id === selectedId) { showDetail(t); }
    });
    Object.keys(rows).forEach(function (id) {
      if (!keep[id]) {
        if (rows[id].parentNode) { rows[id].parentNode.removeChild(rows[id]); }
        delete rows[id];
      }
    });
    $('tasks-empty').hidden = list.length > 0;
  }

  // ------------------------------------------------------------------ schedules

  /** Fetches GET /api/v1/schedules; a 404 (a server without schedules) hides the panel. */
  function refreshSchedules() {
    if (schedulesBusy) { return Promise.resolve(); }
    if (schedulesMissingAt && Date.now() - schedulesMissingAt < SCHEDULES_RETRY_MS) { return Promise.resolve(); }
    if (!canAct()) {
      if (auth !== 'unknown' && !schedulesMissingAt) {
        $('schedules-panel').hidden = false;
        clearSchedules('needs admin access');
      }
      return Promise.resolve();
    }
    schedulesBusy = true;
    return api('GET', '/api/v1/schedules', undefined, true).then(function (r) {
      if (r.status === 404) {
        schedulesMissingAt = Date.now();
        $('schedules-panel').hidden = true;
        return;
      }
      schedulesMissingAt = 0;
      $('schedules-panel').hidden = false;
      if (!r.ok || !r.body) {
        if (r.status) { clearSchedules(errorText(r)); }
        return;
      }
      renderSchedules(r.body.schedules || []);
    }).then(function () { schedulesBusy = false; }, function () { schedulesBusy = false; });
  }

  function clearSchedules(message) {
    var tbody = $('schedules');
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    $('schedules-empty').hidden = true;
    setText('schedules-count', message || '');
  }

  function runTime(iso) {
    var c = el('td', 'mono', iso ? shortTime(iso) : '\u2013');
    if (iso) { c.title = iso; }
    return c;
  }

  function renderSchedules(list) {
    var tbody = $('schedules');
    var existing = {};
    Array.prototype.forEach.call(tbody.rows, function (tr) { existing[tr.getAttribute('data-schedule')] = tr; });
    list.forEach(function (s) {
      var tr = existing[s.name];
      if (!tr) {
        tr = el('tr', 'schedule-row');
        tr.setAttribute('data-schedule', s.name);
        for (var i = 0; i < 7; i++) { tr.appendChild(el('td')); }
      }
      delete existing[s.name];
      tbody.appendChild(tr);   // moves it into list order (by name)
      var cells = [
        el('td', 'mono', s.name),
        el('td', 'mono', s.cmd),
        el('td', 'mono', s.cron),
        el('td', null, s.timezone),
        el('td', null, String(s.missed || '').replace('_', ' ')),
        runTime(s.nextRun),
        runTime(s.lastRun)
      ];
      if (s.uid !== null && s.uid !== undefined) { cells[0].title = 'tasks owned by uid ' + s.uid; }
      cells.forEach(function (c, i) {
        var old = tr.cells[i];
        if (old.textContent !== c.textContent || old.title !== c.title || old.className !== c.className) {
          tr.replaceChild(c, old);
        }
      });
    });
    Object.keys(existing).forEach(function (n) { tbody.removeChild(existing[n]); });
    $('schedules-empty').hidden = list.length > 0;
    setText('schedules-count', list.length ? list.length + ' schedule' + (list.length === 1 ? '' : 's') +
      ', times in this browser\u2019s time zone' : '');
  }

  // ------------------------------------------------------------------ detail

  function select(id) {
    selectedId = id;
    Object.keys(rows).forEach(function (k) { rows[k].classList.toggle('selected', k === id); });
    $('d-message').hidden = true;
    refreshDetail();
  }

  function closeDetail() {
    selectedId = null;
    selectedTask = null;
    $('detail').hidden = true;
    $('detail').parentNode.classList.remove('with-detail');
    Object.keys(rows).forEach(function (k) { rows[k].classList.remove('selected'); });
  }

  function refreshDetail() {
    var id = selectedId;
    if (!id) { return Promise.resolve(); }
    return api('GET', '/api/v1/tasks/' + encodeURIComponent(id)).then(function (r) {
      if (id !== selectedId) { return; }
      if (r.ok && r.body) {
        showDetail(r.body);
      } else if (r.status === 404) {
        message('Task ' + id + ' no longer exists.', true);
      }
    });
  }

  function showDetail(t) {
    selectedTask = t;
    var d = $('detail');
    d.hidden = false;
    d.setAttribute('data-id', t.id);
    d.setAttribute('data-status', t.status);
    d.parentNode.classList.add('with-detail');
    setText('d-id', t.id);
    var badge = $('d-status');
    badge.textContent = t.status.replace('_', ' ');
    badge.className = 'badge status-' + t.status;
    setText('d-cmd', t.cmd);
    setText('d-uid', t.uid === null ? '\u2013 (REST, no uid)' : t.uid);
    setText('d-priority', typeof t.priority === 'number' ? t.priority : '\u2013');
    setText('d-run-at', t.runAt || '\u2013');
    setText('d-schedule', t.schedule || '\u2013');
    setText('d-progress', Math.round((t.progress || 0) * 100) + '%');
    setText('d-attempts', t.attempts);
    setText('d-created', t.createdAt || '\u2013');
    setText('d-started', t.startedAt || '\u2013');
    setText('d-finished', t.finishedAt ? t.finishedAt + ' (took ' + duration(t) + ')' : '\u2013');
    setText('d-args', pretty(t.args));
    setText('d-result', pretty(t.result));
    setText('d-error', t.error || '');
    updateActionButtons();
  }

  function message(text, isError) {
    var m = $('d-message');
    m.textContent = text;
    m.hidden = false;
    if (isError) { m.setAttribute('data-kind', 'error'); } else { m.removeAttribute('data-kind'); }
  }

  function cancelSelected() {
    var t = selectedTask;
    if (!t || !canAct()) { return; }
    $('d-cancel').disabled = true;
    api('POST', '/api/v1/tasks/' + encodeURIComponent(t.id) + '/cancel').then(function (r) {
      if (r.ok) {
        message('Cancellation requested for ' + t.id + '.');
      } else {
        message('Cancel failed: ' + errorText(r), true);
      }
      return refreshDetail();
    }).then(refreshTasks);
  }

  function retrySelected() {
    var t = selectedTask;
    if (!t || !canAct()) { return; }
    var args = {};
    Object.keys(t.args || {}).forEach(function (k) { if (k !== 'id') { args[k] = t.args[k]; } });  // a new task, new id
    var body = { cmd: t.cmd, args: args };
    if (t.uid !== null) { body.uid = t.uid; }
    $('d-retry').disabled = true;
    api('POST', '/api/v1/tasks', body).then(function (r) {
      if (r.ok && r.body) {
        var newId = r.body.id;
        select(newId);
        message('Submitted again as ' + newId + ' (a new task; the old one stays as it was).');
      } else {
        message('Retry failed: ' + errorText(r), true);
        updateActionButtons();
      }
      return refreshTasks();
    });
  }

  // ------------------------------------------------------------------ wiring

  function tasksLoop() {
    var p = $('auto-refresh').checked ? Promise.all([refreshTasks(), refreshSchedules()]) : Promise.resolve();
    p.then(function () { setTimeout(tasksLoop, TASKS_EVERY_MS); });
  }

  function init() {
    $('token').value = token;
    $('token-form').addEventListener('submit', function (e) {
      e.preventDefault();
      token = $('token').value.trim();
      var s = storage();
      if (s) {
        try { if (token) { s.setItem(TOKEN_KEY, token); } else { s.removeItem(TOKEN_KEY); } } catch (err) { /* ignore */ }
      }
      auth = 'unknown';
      api('GET', '/api/v1/stats').then(function (r) { if (r.ok) { renderStats(r.body); } });
    });
    $('token-forget').addEventListener('click', function () {
      token = '';
      $('token').value = '';
      var s = storage();
      if (s) { try { s.removeItem(TOKEN_KEY); } catch (err) { /* ignore */ } }
      auth = 'unknown';
      api('GET', '/api/v1/stats');
    });
    $('reload').addEventListener('click', reload);
    $('filters').addEventListener('submit', function (e) { e.preventDefault(); refreshTasks(); });
    ['f-status', 'f-handler'].forEach(function (id) { $(id).addEventListener('change', refreshTasks); });
    $('d-close').addEventListener('click', closeDetail);
    $('d-cancel').addEventListener('click', cancelSelected);
    $('d-retry').addEventListener('click', retrySelected);
    window.addEventListener('resize', drawChart);
    var q = new URLSearchParams(window.location.search);
    if (q.get('uid')) { $('f-uid').value = q.get('uid'); }
    updateActionButtons();
    drawChart();
    statsLoop();
    tasksLoop();
  }

  // For debugging and tests.
  window.TaskGateAdmin = {
    auth: function () { return auth; },
    refresh: function () { return Promise.all([refreshTasks(), refreshSchedules()]); },
    select: select
  };

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
