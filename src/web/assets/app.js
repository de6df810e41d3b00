// Maestra privacy center: reads the JSON API of the server that served it, nothing else.
// No framework, no other origin; charts are SVG built here. Every figure shown carries the
// API value it came from (data-figure = where in the answer, data-value = the value), so
// the browser tests can check the page says what the API says.
'use strict';

(function () {
  const KEY = 'maestra.apiKey';
  const SVG = 'http://www.w3.org/2000/svg';
  const state = { privacy: null, mode: null, convOffset: 0, convLimit: 20, approvalsTimer: null, discovery: true, finding: false };

  // ---- helpers -------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  const int = (n) => String(n);
  const usd = (n) => '$' + Number(n).toFixed(4);
  const count = (n) => Number(n).toLocaleString('en-US');
  const plural = (n, one, many) => (Number(n) === 1 ? one : many);

  // Bytes in decimal units, as sizes are usually read: 999 B, 12.3 kB, 1.1 MB.
  function bytes(n) {
    const v = Number(n);
    if (!(v >= 1000)) return v + ' B';
    const units = ['kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
    let x = v / 1000, i = 0;
    // 999.95 kB would print as "1000.0 kB": that is 1.0 MB.
    while (x >= 999.95 && i < units.length - 1) { x /= 1000; i++; }
    return x.toFixed(1) + ' ' + units[i];
  }
  // The exact count, shown on hover.
  const exactBytes = (n) => count(n) + ' bytes';

  // A figure: its text, and where it came from; `title` is what a hover shows.
  function fig(value, path, fmt, title) {
    return el('span', { class: 'fig', 'data-figure': path, 'data-value': String(value), title: title || null, text: (fmt || int)(value) });
  }

  // A byte count: human-readable, the exact number on hover.
  const byteFig = (value, path) => fig(value, path, bytes, exactBytes(value));

  // Times: to the second in the viewer's time zone; the full UTC value on hover.
  const pad = (n) => String(n).padStart(2, '0');
  function parseTime(text) {
    // Sub-millisecond digits (the audit log writes nanoseconds) are dropped: a Date holds ms.
    const d = new Date(String(text).replace(/(\.\d{3})\d+/, '$1'));
    return Number.isNaN(d.getTime()) ? null : d;
  }
  function localTime(d) {
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function when(text, missing) {
    if (text === null || text === undefined || text === '') return document.createTextNode(missing || '—');
    const d = parseTime(text);
    if (!d) return document.createTextNode(String(text));
    const utc = d.toISOString();
    return el('time', { datetime: utc, title: utc + ' (UTC)', 'data-time': String(text), text: localTime(d) });
  }
  function timeZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'your time zone'; } catch (_) { return 'your time zone'; }
  }

  // How near a limit is: null (no limit or under 80 %), 'near' (80 % or more) or 'reached'.
  const NEAR = 0.8;
  function limitLevel(p) {
    if (!p || p.limit_usd === null || p.limit_usd === undefined) return null;
    const limit = Number(p.limit_usd), spent = Number(p.spent_usd);
    if (limit <= 0) return spent > 0 ? 'reached' : null;
    const share = spent / limit;
    return share >= 1 ? 'reached' : share >= NEAR ? 'near' : null;
  }
  const percent = (p) => (Number(p.limit_usd) > 0 ? Math.floor((Number(p.spent_usd) / Number(p.limit_usd)) * 100) : 100) + ' %';

  // A warning for one limit, or null: `what` names it ("The daily limit", "ann's daily limit").
  function limitWarning(what, p, id) {
    const level = limitLevel(p);
    if (!level) return null;
    const figures = `${usd(p.spent_usd)} of ${usd(p.limit_usd)} spent`;
    const resets = p.resets_at ? [' at ', when(p.resets_at)] : [];
    const text = level === 'reached'
      ? [`${what} is reached (${figures}): paid calls are refused until it resets`, ...resets, '.']
      : [`${what} is ${percent(p)} used (${figures}); it resets`, ...resets, '.'];
    return el('p', { class: 'warn ' + level, role: level === 'reached' ? 'alert' : 'status', 'data-warning': id, 'data-level': level },
      el('strong', { text: level === 'reached' ? 'Limit reached: ' : 'Nearing a limit: ' }), ...text);
  }

  function setStatus(text) {
    document.getElementById('status').textContent = text;
  }

  function errorBox(target, err) {
    target.replaceChildren(el('p', { class: 'error', role: 'alert', text: 'Error: ' + err.message }));
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const key = sessionStorage.getItem(KEY);
    if (key) headers['X-API-Key'] = key;
    const init = { method, headers, credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (!r.ok) {
      const e = new Error(data && data.error ? data.error.message : 'HTTP ' + r.status);
      e.status = r.status;
      if (r.status === 401) showLogin();
      throw e;
    }
    return data;
  }

  function confirmAction(text) {
    const d = document.getElementById('confirm');
    document.getElementById('confirm-text').textContent = text;
    return new Promise((resolve) => {
      d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
      d.returnValue = 'cancel';
      d.showModal();
      document.getElementById('confirm-cancel').focus();
    });
  }

  function download(name, data) {
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function table(caption, head, rows, figures) {
    return el('table', { 'data-table': figures || null },
      el('caption', { text: caption }),
      el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: head.length, class: 'empty', text: 'Nothing yet.' }))));
  }

  // A bar chart: one group per label, one bar per series.
  function barChart(title, labels, series, fmt) {
    const w = 640, h = 200, pad = 44, base = h - 24;
    const max = Math.max(0, ...series.flatMap((s) => s.values)) || 1;
    const group = (w - pad) / Math.max(1, labels.length);
    const bw = Math.max(2, (group - 4) / series.length);
    const root = svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': title, class: 'chart' });
    root.append(svg('title', {}, title));
    root.append(svg('line', { x1: pad, y1: base, x2: w, y2: base, class: 'axis' }));
    root.append(svg('text', { x: 2, y: 12, class: 'tick' }, (fmt || String)(max)));
    root.append(svg('text', { x: 2, y: base, class: 'tick' }, '0'));
    labels.forEach((label, i) => {
      series.forEach((s, j) => {
        const v = s.values[i] || 0;
        const bh = Math.round((v / max) * (base - 16));
        const r = svg('rect', { x: pad + i * group + 2 + j * bw, y: base - bh, width: bw - 1, height: bh, class: 'bar ' + s.cls });
        r.append(svg('title', {}, `${label} ${s.name}: ${(fmt || String)(v)}`));
        root.append(r);
      });
      const every = Math.ceil(labels.length / 8);
      if (i % every === 0) root.append(svg('text', { x: pad + i * group + 2, y: h - 6, class: 'tick' }, label.slice(5)));
    });
    const legend = el('p', { class: 'legend' }, series.map((s) => el('span', { class: 'key ' + s.cls, text: s.name })));
    return el('figure', {}, root, legend);
  }

  // ---- sections ------------------------------------------------------------------------

  async function loadReport() {
    const body = document.getElementById('report-body');
    const period = document.getElementById('report-period').value;
    try {
      const r = await api('GET', '/api/report?period=' + encodeURIComponent(period));
      const t = r.totals;
      const cards = el('div', { class: 'cards' },
        el('div', { class: 'card' }, el('h3', { text: 'Calls' }), fig(t.calls, 'totals.calls')),
        el('div', { class: 'card' }, el('h3', { text: 'Errors' }), fig(t.errors, 'totals.errors')),
        el('div', { class: 'card' }, el('h3', { text: 'Blocked' }), fig(t.blocked, 'totals.blocked')),
        el('div', { class: 'card' }, el('h3', { text: 'Sent' }), byteFig(t.bytes_sent, 'totals.bytes_sent')),
        el('div', { class: 'card' }, el('h3', { text: 'Received' }), byteFig(t.bytes_received, 'totals.bytes_received')),
        el('div', { class: 'card' }, el('h3', { text: 'Withheld from the cloud' }), fig(t.withheld, 'totals.withheld')));
      // Personal values minimisation replaced with placeholders before a cloud call, per day
      // and provider (counts only: the values never reach the audit log).
      const withheld = r.withheld.length
        ? table('Withheld from the cloud, per day and provider', ['Day', 'Provider', 'Values withheld'],
          r.withheld.map((w, i) => el('tr', { 'data-day': w.day, 'data-service': w.service },
            el('td', { text: w.day }), el('td', { text: w.service }),
            el('td', {}, fig(w.values, `withheld.${i}.values`)))), 'withheld')
        : el('p', { class: 'empty', id: 'withheld-empty', text: 'Nothing was withheld from a cloud call in this period.' });
      const chart = barChart(`Calls, errors and blocked attempts per day, ${r.since} to ${r.until}`,
        r.days.map((d) => d.day),
        [{ name: 'calls', cls: 's1', values: r.days.map((d) => d.calls) },
         { name: 'errors', cls: 's3', values: r.days.map((d) => d.errors) },
         { name: 'blocked', cls: 's2', values: r.days.map((d) => d.blocked) }]);
      const agents = r.agents.map((a, i) => el('div', { class: 'agent' },
        el('h3', { text: a.agent || '(no agent or surface)' }),
        el('p', {}, fig(a.totals.calls, `agents.${i}.totals.calls`), plural(a.totals.calls, ' call', ' calls') + ', ',
          fig(a.totals.errors, `agents.${i}.totals.errors`), plural(a.totals.errors, ' error', ' errors') + ', ',
          fig(a.totals.blocked, `agents.${i}.totals.blocked`), ' blocked, ',
          byteFig(a.totals.bytes_sent, `agents.${i}.totals.bytes_sent`), ' sent, ',
          byteFig(a.totals.bytes_received, `agents.${i}.totals.bytes_received`), ' received'),
        table('Services and hosts contacted', ['Service', 'Host', 'Calls', 'Errors', 'Blocked', 'Sent', 'Received', ''],
          a.destinations.map((d, j) => el('tr', {},
            el('td', { text: d.service }), el('td', { text: d.host || '—' }),
            el('td', {}, fig(d.calls, `agents.${i}.destinations.${j}.calls`)),
            el('td', { class: d.errors ? 'bad' : null }, fig(d.errors, `agents.${i}.destinations.${j}.errors`)),
            el('td', {}, fig(d.blocked, `agents.${i}.destinations.${j}.blocked`)),
            el('td', {}, byteFig(d.bytes_sent, `agents.${i}.destinations.${j}.bytes_sent`)),
            el('td', {}, byteFig(d.bytes_received, `agents.${i}.destinations.${j}.bytes_received`)),
            el('td', {}, el('a', { href: '#audit', 'data-service': d.service, onclick: (ev) => openAudit(ev, d.service, period), text: 'audit entries' }))))),
        a.blocked_reasons.length ? el('ul', { class: 'reasons', 'aria-label': 'Why calls were blocked' },
          a.blocked_reasons.map((b, j) => el('li', {}, fig(b.count, `agents.${i}.blocked_reasons.${j}.count`), ' blocked: ', b.reason || '(no reason recorded)'))) : null));
      const top = table('Most-contacted hosts', ['Host', 'Service', 'Calls', 'Errors', 'Blocked', 'Sent', 'Received'],
        r.top_hosts.map((h, i) => el('tr', {}, el('td', { text: h.host || '—' }), el('td', { text: h.service }),
          el('td', {}, fig(h.calls, `top_hosts.${i}.calls`)),
          el('td', { class: h.errors ? 'bad' : null }, fig(h.errors, `top_hosts.${i}.errors`)),
          el('td', {}, fig(h.blocked, `top_hosts.${i}.blocked`)),
          el('td', {}, byteFig(h.bytes_sent, `top_hosts.${i}.bytes_sent`)),
          el('td', {}, byteFig(h.bytes_received, `top_hosts.${i}.bytes_received`)))));
      body.replaceChildren(el('p', { class: 'muted', text: `${r.since} to ${r.until} (UTC), through audit entry #${r.through_seq}` }),
        cards, chart, el('h3', { text: 'By agent or surface' }),
        ...(agents.length ? agents : [el('p', { class: 'empty', text: 'No calls in this period.' })]), top,
        el('h3', { text: 'Withheld from the cloud' }), withheld);
    } catch (e) { errorBox(body, e); }
  }

  // Per tool server (or service) and tool: calls, errors, refusals and the last use.
  async function loadTools() {
    const body = document.getElementById('tools-body');
    const period = document.getElementById('tools-period').value;
    try {
      const r = await api('GET', '/api/report?period=' + encodeURIComponent(period));
      const range = el('p', { class: 'muted', text: `${r.since} to ${r.until} (UTC), through audit entry #${r.through_seq}` });
      if (!r.tools.length) {
        body.replaceChildren(range, el('p', { class: 'empty', id: 'tools-empty', text: 'No tool calls in this period.' }));
        return;
      }
      const rows = r.tools.map((t, i) => el('tr', { 'data-server': t.server, 'data-tool': t.tool },
        el('td', {}, el('code', { text: t.server })), el('td', {}, el('code', { text: t.tool })),
        el('td', {}, fig(t.calls, `tools.${i}.calls`)),
        el('td', { class: t.errors ? 'bad' : null }, fig(t.errors, `tools.${i}.errors`)),
        el('td', {}, fig(t.blocked, `tools.${i}.blocked`)),
        el('td', {}, when(t.last_used)),
        el('td', {}, el('a', { href: '#audit', onclick: (ev) => openAudit(ev, t.server, period), text: 'audit entries' }))));
      body.replaceChildren(range,
        table('Tools called, most calls first', ['Server', 'Tool', 'Calls', 'Errors', 'Blocked', 'Last use', ''], rows, 'tools'));
    } catch (e) { errorBox(body, e); }
  }

  function openAudit(ev, service, period) {
    ev.preventDefault();
    document.getElementById('audit-service').value = service;
    document.getElementById('audit-period').value = period;
    location.hash = '#audit';
  }

  // Requests and tokens beside the dollars of one group (`path` is where it is in the answer).
  function usedCells(r, path) {
    return [el('td', {}, fig(r.requests, `${path}.requests`)),
      el('td', {}, fig(r.tokens_in, `${path}.tokens_in`, count)),
      el('td', {}, fig(r.tokens_out, `${path}.tokens_out`, count)),
      el('td', {}, fig(r.usd, `${path}.usd`, usd))];
  }

  // A user's or key's standing against its own limits today and this month, and warnings.
  function scopedLimits(who, limits, path, warnings, id) {
    if (!limits) return [];
    return ['daily', 'monthly'].map((period) => {
      const p = limits[period];
      const w = limitWarning(`${who}'s ${period} limit`, p, `${id}:${period}`);
      if (w) warnings.push(w);
      if (p.limit_usd === null || p.limit_usd === undefined) return el('td', { class: 'muted', text: 'no limit' });
      return el('td', { class: limitLevel(p) ? 'warn-cell ' + limitLevel(p) : null },
        fig(p.spent_usd, `${path}.limits.${period}.spent_usd`, usd), ' of ',
        fig(p.limit_usd, `${path}.limits.${period}.limit_usd`, usd));
    });
  }

  async function loadSpend() {
    const body = document.getElementById('spend-body');
    try {
      const s = await api('GET', '/api/spend?days=30');
      const warnings = [];
      const limit = (name, p) => {
        const key = name.toLowerCase();
        const level = limitLevel(p);
        const w = limitWarning(`The ${key} limit`, p, key);
        if (w) warnings.push(w);
        return el('div', { class: 'card' + (level ? ' limit-' + level : ''), 'data-limit': key },
          el('h3', { text: name }),
          el('p', {}, fig(p.spent_usd, `limits.${key}.spent_usd`, usd), ' spent'),
          el('p', {}, fig(p.reserved_usd, `limits.${key}.reserved_usd`, usd), ' reserved'),
          el('p', {}, 'of ', fig(p.limit_usd, `limits.${key}.limit_usd`, usd), level ? ` (${percent(p)})` : null),
          el('p', { class: 'muted' }, 'resets ', when(p.resets_at)));
      };
      const days = [];
      const byDay = Object.fromEntries(s.by_day.map((d) => [d.key, d.usd]));
      const start = new Date(s.since + 'T00:00:00Z');
      for (let i = 0; i <= s.days; i++) {
        const d = new Date(start.getTime() + i * 86400000).toISOString().slice(0, 10);
        days.push(d);
      }
      const used = ['Requests', 'Tokens in', 'Tokens out', 'Spent'];
      const group = (title, first, rows, path) => table(title, [first, ...used], rows.map((r, i) => el('tr', {},
        el('td', { text: r.key }), ...usedCells(r, `${path}.${i}`))));
      const cards = el('div', { class: 'cards' }, limit('Daily', s.limits.daily), limit('Monthly', s.limits.monthly),
        el('div', { class: 'card' }, el('h3', { text: 'Since ' + s.since }), fig(s.total_usd, 'total_usd', usd),
          el('p', {}, fig(s.total_requests, 'total_requests'), plural(s.total_requests, ' request', ' requests')),
          el('p', {}, fig(s.total_tokens_in, 'total_tokens_in', count), ' tokens in, ',
            fig(s.total_tokens_out, 'total_tokens_out', count), ' out')));
      const userLimits = s.by_user.some((u) => u.limits);
      const users = table('By user', ['User', ...used, ...(userLimits ? ['Today', 'This month'] : [])],
        s.by_user.map((u, i) => el('tr', {}, el('td', { text: u.key }), ...usedCells(u, `by_user.${i}`),
          ...(userLimits ? (u.limits ? scopedLimits(u.key, u.limits, `by_user.${i}`, warnings, 'user:' + u.key)
            : [el('td', { class: 'muted', text: '—' }), el('td', { class: 'muted', text: '—' })]) : []))));
      const parts = [cards,
        barChart('Spend per day, last 30 days (USD)', days, [{ name: 'USD', cls: 's1', values: days.map((d) => byDay[d] || 0) }], usd),
        group('By day', 'Day', s.by_day, 'by_day'), group('By model', 'Model', s.by_model, 'by_model'), users];
      if (state.mode === 'cloud') parts.push(keyTable(s.by_key || [], warnings));
      body.replaceChildren(el('div', { class: 'warnings', id: 'spend-warnings' }, warnings), ...parts);
    } catch (e) { errorBox(body, e); }
  }

  // Cloud mode: spend and calls per API key, by the key's name (calls and errors are what the
  // audit log counts under that name: a /v1 call made with a key is audited as its agent).
  function keyTable(keys, warnings) {
    const limits = keys.some((k) => k.limits);
    return table('By API key',
      ['Key', 'Calls', 'Errors', ...['Requests', 'Tokens in', 'Tokens out', 'Spent'], ...(limits ? ['Today', 'This month'] : [])],
      keys.map((k, i) => el('tr', { 'data-key': k.key },
        el('td', {}, el('code', { text: k.key }), k.revoked ? el('span', { class: 'muted', text: ' (revoked)' }) : null),
        el('td', {}, fig(k.calls, `by_key.${i}.calls`)),
        el('td', { class: k.errors ? 'bad' : null }, fig(k.errors, `by_key.${i}.errors`)),
        ...usedCells(k, `by_key.${i}`),
        ...(limits ? scopedLimits('Key ' + k.key, k.limits, `by_key.${i}`, warnings, 'key:' + k.key) : []))),
      'by_key');
  }

  function convUser() {
    return document.getElementById('conv-user').value.trim();
  }

  async function loadConversations() {
    const body = document.getElementById('conv-body');
    const user = convUser();
    let q = `/api/conversations?limit=${state.convLimit}&offset=${state.convOffset}`;
    if (user) q += '&user_id=' + encodeURIComponent(user);
    try {
      const r = await api('GET', q);
      const rows = r.conversations.map((c, i) => el('tr', { 'data-conversation': c.id },
        el('td', {}, el('code', { text: c.id })), el('td', { text: c.topic }), el('td', { text: c.owner }),
        el('td', {}, fig(c.message_count, `conversations.${i}.message_count`)), el('td', {}, when(c.updated_at)),
        el('td', { class: 'actions' },
          el('button', { type: 'button', onclick: () => openConversation(c.id), text: 'Open' }),
          el('button', { type: 'button', onclick: () => exportConversation(c.id), text: 'Export' }),
          el('button', { type: 'button', class: 'danger', 'data-delete': c.id, onclick: () => deleteConversation(c), text: 'Delete' }))));
      const pager = el('p', { class: 'pager' },
        el('button', { type: 'button', disabled: state.convOffset === 0, onclick: () => { state.convOffset = Math.max(0, state.convOffset - state.convLimit); loadConversations(); }, text: 'Newer' }),
        r.conversations.length ? ` ${state.convOffset + 1}–${state.convOffset + r.conversations.length} ` : ' none ',
        el('button', { type: 'button', disabled: r.conversations.length < state.convLimit, onclick: () => { state.convOffset += state.convLimit; loadConversations(); }, text: 'Older' }));
      body.replaceChildren(table('Conversations, newest first', ['Id', 'Topic', 'User', 'Messages', 'Updated', ''], rows), pager);
    } catch (e) { errorBox(body, e); }
  }

  function result(text) {
    document.getElementById('conv-detail').replaceChildren(el('p', { class: 'done', role: 'status', text }));
  }

  async function openConversation(id) {
    const box = document.getElementById('conv-detail');
    try {
      const c = await api('GET', '/api/conversations/' + encodeURIComponent(id));
      box.replaceChildren(el('h3', { text: c.topic || c.id }),
        el('ol', { class: 'messages' }, (c.messages || []).map((m) => el('li', { class: 'msg ' + m.role },
          el('strong', { text: m.role + ' ' }), el('span', { class: 'muted' }, when(m.timestamp)), el('p', { text: m.content })))));
      box.scrollIntoView();
    } catch (e) { errorBox(box, e); }
  }

  async function exportConversation(id) {
    try {
      download(id + '.json', await api('GET', '/api/conversations/' + encodeURIComponent(id) + '/export'));
      result('Exported ' + id + '.');
    } catch (e) { errorBox(document.getElementById('conv-detail'), e); }
  }

  async function deleteConversation(c) {
    const ok = await confirmAction(`Delete conversation "${c.topic}" (${c.id}) of ${c.owner} with its ${c.message_count} messages? It is removed from the database files and cannot be restored.`);
    if (!ok) return;
    try {
      const r = await api('DELETE', '/api/conversations/' + encodeURIComponent(c.id));
      result(`Deleted ${r.deleted} (${c.message_count} messages).`);
      loadConversations();
    } catch (e) { errorBox(document.getElementById('conv-detail'), e); }
  }

  async function exportUser() {
    const user = convUser();
    if (!user) { result('Enter a user first.'); return; }
    const target = document.getElementById('conv-detail');
    try {
      // A job with progress: a large user's export does not hold a request open.
      let job = await api('POST', '/api/users/' + encodeURIComponent(user) + '/export', {});
      job = await poll(job, target, 'Exporting ' + user);
      if (job.state !== 'done') throw job.error || { message: 'the export failed' };
      // The server hands an export out once and drops it when the user is forgotten.
      if (job.result.emptied) throw { message: 'the export is no longer held (' + job.result.emptied + '); export again' };
      download(user + '-export.json', job.result);
      result(`Exported ${job.result.conversations.length} conversation(s) of ${user}.`);
    } catch (e) { errorBox(target, e); }
  }

  async function forgetUser() {
    const user = convUser();
    if (!user) { result('Enter a user first.'); return; }
    const ok = await confirmAction(`Forget ${user}: every conversation of this user is deleted from the database files. This cannot be undone.`);
    if (!ok) return;
    try {
      const r = await api('DELETE', '/api/users/' + encodeURIComponent(user) + '/data');
      result(`Forgot ${r.user_id}: ${r.deleted_conversations} conversation(s) removed.`);
      state.convOffset = 0;
      loadConversations();
    } catch (e) { errorBox(document.getElementById('conv-detail'), e); }
  }

  async function poll(job, target, label) {
    const bar = el('progress', { max: 1, value: 0, 'aria-label': label + ' progress' });
    const text = el('span', { text: ' ' + label + '…' });
    target.replaceChildren(el('p', { role: 'status' }, bar, text));
    for (;;) {
      const p = job.progress;
      if (p.total > 0) { bar.max = p.total; bar.value = p.done; text.textContent = ` ${label}: ${p.done} of ${p.total}`; }
      if (job.state !== 'running') return job;
      await new Promise((r) => setTimeout(r, 300));
      job = await api('GET', '/api/jobs/' + encodeURIComponent(job.id));
    }
  }

  // The vault key check (`key_status`) and the key's source, in words.
  const KEY_STATUS = {
    matches: 'The encryption key in use matches the one your secrets were sealed with: the vault opens.',
    unset: 'Nothing has been sealed yet: the first secret stored will be sealed with the key in use, and it will be checked from then on.',
    mismatch: 'The encryption key in use is NOT the one your secrets were sealed with: they cannot be opened. Start Maestra with the key the vault was made with (the same MAESTRA_ENCRYPTION_KEY, or keys/vault.key).',
  };
  const KEY_SOURCE = {
    file: 'A key file in Maestra\'s home (keys/vault.key).',
    environment: 'The MAESTRA_ENCRYPTION_KEY environment variable.',
  };

  async function loadVault() {
    const body = document.getElementById('vault-body');
    try {
      const v = await api('GET', '/api/vault');
      const rows = v.secrets.map((s, i) => el('tr', {},
        el('td', {}, el('code', { text: s.name })),
        el('td', { 'data-figure': `secrets.${i}.encrypted`, 'data-value': String(s.encrypted), text: s.encrypted ? 'encrypted' : 'NOT encrypted' }),
        el('td', {}, when(s.updated_at)),
        el('td', {}, when(s.last_used, 'never (in the audit log)')),
        el('td', { text: s.used_by.join(', ') || '—' })));
      const out = el('div', { id: 'vault-rotation' });
      body.replaceChildren(
        el('dl', { class: 'facts' },
          el('dt', { text: 'Encryption key' }), el('dd', { 'data-figure': 'key_status', 'data-value': v.key_status, class: 'key-status ' + v.key_status, text: KEY_STATUS[v.key_status] || v.key_status }),
          el('dt', { text: 'Where the key comes from' }), el('dd', { 'data-figure': 'key_source', 'data-value': v.key_source, text: KEY_SOURCE[v.key_source] || v.key_source }),
          el('dt', { text: 'Active keys' }), el('dd', {}, fig(v.active_keys, 'active_keys')),
          el('dt', { text: 'Encrypted secrets' }), el('dd', {}, fig(v.encrypted, 'encrypted')),
          el('dt', { text: 'Unencrypted secrets' }), el('dd', {}, fig(v.unencrypted, 'unencrypted'))),
        table('Stored secrets (values are never shown)', ['Name', 'Encryption', 'Written', 'Last used', 'Used by'], rows),
        el('p', {}, el('button', { type: 'button', id: 'vault-rotate', onclick: () => rotateKey(out), text: 'Rotate the vault key' })), out);
    } catch (e) { errorBox(body, e); }
  }

  async function rotateKey(out) {
    const ok = await confirmAction('Rotate the vault key: a new key is made and every secret is re-encrypted under it; the old key is then retired. Backups made with the old key file need that file to be restored.');
    if (!ok) return;
    try {
      const job = await poll(await api('POST', '/api/vault/rotate', { confirm: true }), out, 'Re-encrypting');
      out.replaceChildren(el('p', { class: job.state === 'done' ? 'done' : 'error', role: 'status',
        text: job.state === 'done' ? `Key rotated: ${job.result.rewritten} secret(s) re-encrypted.` : 'Rotation failed: ' + job.error.message }));
    } catch (e) { errorBox(out, e); }
  }

  // What the chain's last verify found, as nodes (its time is a <time>).
  function chainText(job) {
    if (!job) return ['Not verified yet in this session of the server.'];
    if (job.state === 'running') return ['Verifying…'];
    if (job.state === 'failed') return ['The verify could not run: ' + job.error.message];
    const r = job.result;
    if (r.ok) return [`Verified through entry #${r.through_seq} at `, when(job.finished_at), ` (${r.entries} entries in ${r.files} file(s)).`];
    const p = r.problem;
    return [`BROKEN: ${p.file}${p.line ? ' line ' + p.line : ''}: ${p.message} (verified ${r.entries} entries before it)`];
  }

  async function loadChain() {
    const box = document.getElementById('audit-chain');
    try {
      const { job } = await api('GET', '/api/audit/verify');
      const cls = !job || job.state === 'running' ? 'muted' : job.state === 'failed' || !job.result.ok ? 'error' : 'chain';
      const line = el('p', { id: 'chain-state', class: cls }, chainText(job));
      const out = el('div');
      const button = el('button', { type: 'button', id: 'audit-verify', onclick: async () => {
        try {
          const done = await poll(await api('POST', '/api/audit/verify', {}), out, 'Verifying');
          out.replaceChildren();
          line.replaceChildren(...chainText(done));
          line.className = done.state === 'done' && done.result.ok ? 'chain' : 'error';
        } catch (e) { errorBox(out, e); }
      }, text: 'Verify the chain now' });
      box.replaceChildren(el('h3', { text: 'Chain' }), line, button, out);
    } catch (e) { errorBox(box, e); }
  }

  function sinceFor(period) {
    const days = { today: 0, '7d': 6, '30d': 29 }[period];
    if (days === undefined) return null;
    const d = new Date(Date.now() - days * 86400000).toISOString().slice(0, 10);
    return d;
  }

  async function loadAudit() {
    loadChain();
    const body = document.getElementById('audit-body');
    const params = new URLSearchParams({ limit: '100' });
    for (const name of ['user', 'service', 'category', 'result']) {
      const v = document.getElementById('audit-' + name).value.trim();
      if (v) params.set(name, v);
    }
    const since = sinceFor(document.getElementById('audit-period').value);
    if (since) params.set('since', since);
    try {
      const r = await api('GET', '/api/audit?' + params.toString());
      const isCount = (v) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
      const detail = (d) => ['host', 'bytes_sent', 'bytes_received', 'reason', 'model', 'status', 'error']
        .filter((k) => d[k] !== undefined).map((k) => k.startsWith('bytes_') && isCount(d[k])
          ? el('div', {}, `${k}: `, el('span', { class: 'bytes', title: exactBytes(d[k]), text: bytes(d[k]) }))
          : el('div', { text: `${k}: ${d[k]}` }));
      const rows = r.entries.map((e) => el('tr', { id: 'audit-seq-' + e.seq },
        el('td', { text: '#' + e.seq }), el('td', {}, when(e.ts)), el('td', { text: e.user_id || '—' }),
        el('td', { text: e.agent_id || e.surface_id || '—' }), el('td', { text: e.category }),
        el('td', { text: e.service }), el('td', { text: e.action }),
        el('td', { class: 'result ' + e.result, text: e.result }), el('td', { class: 'details' }, detail(e.details || {}))));
      body.replaceChildren(el('p', {}, fig(r.count, 'count'), ' entries (newest first, at most 100)'),
        table('Audit entries', ['Seq', 'Time', 'User', 'Agent', 'Category', 'Service', 'Action', 'Result', 'Details'], rows));
    } catch (e) { errorBox(body, e); }
  }

  async function loadControls() {
    const body = document.getElementById('controls-body');
    try {
      const p = await api('GET', '/api/privacy');
      state.privacy = p;
      showMode(p);
      const out = el('div', { id: 'controls-result' });
      const toggle = el('button', { type: 'button', id: 'local-only-toggle', role: 'switch', 'aria-checked': String(p.local_only),
        onclick: () => switchLocalOnly(!p.local_only, out), text: p.local_only ? 'Local-only is ON: turn it off' : 'Local-only is OFF: turn it on' });
      body.replaceChildren(
        el('h3', { text: 'Local-only mode' }),
        el('p', {}, 'Now: ', el('strong', { 'data-figure': 'local_only', 'data-value': String(p.local_only), text: p.local_only ? 'on' : 'off' }),
          '. While it is on, nothing leaves this machine: cloud models and cloud services are refused and the refusal is audited.'),
        toggle,
        el('h3', { text: 'Lockdown' }),
        el('p', { text: 'For an incident: local-only on, every API key revoked, and the vault key rotated. Lift it by turning local-only off; revoked keys stay revoked.' }),
        el('button', { type: 'button', id: 'lockdown', class: 'danger', onclick: () => lockdown(out), text: 'Lock down now' }),
        out);
    } catch (e) { errorBox(body, e); }
  }

  async function switchLocalOnly(on, out) {
    const text = on
      ? 'Turn local-only mode on? From now on, calls to cloud models (OpenAI, Anthropic) and cloud services are refused; only local models and devices answer.'
      : 'Turn local-only mode off? Cloud models and services can be called again, and the assistant may send data to them.';
    if (!(await confirmAction(text))) return;
    try {
      const r = await api('POST', '/api/controls/local-only', { on });
      await loadControls();
      document.getElementById('controls-result').replaceChildren(el('p', { class: 'done', role: 'status', text: 'Local-only is now ' + (r.local_only ? 'on' : 'off') + '.' }));
    } catch (e) { errorBox(out, e); }
  }

  async function lockdown(out) {
    const ok = await confirmAction('Lock down? Local-only mode goes on, EVERY API key is revoked (assistants, phones and this page in cloud mode lose access; make new keys with `maestra keys create`), and the vault key is rotated.');
    if (!ok) return;
    try {
      const r = await api('POST', '/api/controls/lockdown', { confirm: true });
      await loadControls();
      document.getElementById('controls-result').replaceChildren(el('p', { class: 'done', role: 'status',
        text: `Locked down: local-only on, ${r.api_keys_revoked} API key(s) revoked, vault key ${r.vault_rotation ? 'rotation started' : 'not rotated (it comes from the environment)'}.` }));
    } catch (e) { errorBox(out, e); }
  }

  // ---- devices on the local network (issue 28) -----------------------------------------
  // Every name here was announced by something on the network: it is only ever text.

  const hostPort = (d) => (String(d.address).includes(':') ? `[${d.address}]` : d.address) + ':' + d.port;

  // What Maestra makes of a device: configured, addable with --write, moved, or listed only.
  function deviceState(d) {
    const o = d.offer || {};
    if (d.configured) return `configured as ${d.configured}`;
    if (o.offer === 'new') return `not configured (maestra services discover --write adds it as ${o.service})`;
    if (o.offer === 'update') return `moved? ${o.service} is configured at ${o.configured}; change it yourself if so`;
    if (o.offer === 'same') return `the same device as ${o.service}`;
    return 'listed only: ' + (o.reason || d.not_writable || 'no service for this kind');
  }

  async function loadDevices() {
    const body = document.getElementById('devices-body');
    const period = document.getElementById('devices-period').value;
    try {
      const r = await api('GET', '/api/devices?period=' + encodeURIComponent(period));
      state.discovery = r.discovery;
      document.getElementById('devices-find').disabled = !r.discovery || state.finding;
      const off = r.discovery ? null : el('p', { class: 'warn', id: 'devices-off',
        text: 'Finding devices is turned off on this machine (discovery = false in maestra.toml, or MAESTRA_DISCOVERY=false).' });
      const last = r.last_run ? ['Last search ended ', when(r.last_run), '.'] : ['No search since the server started.'];
      const found = r.devices.map((d) => el('tr', { 'data-device': `${d.kind} ${hostPort(d)}` },
        el('td', {}, el('code', { text: d.kind })),
        el('td', { class: 'device-name', text: d.name || '—' }),
        el('td', {}, el('code', { text: hostPort(d) })),
        el('td', { text: d.found_by.join(' + ') }),
        el('td', { class: d.local ? null : 'bad', text: deviceState(d) }),
        el('td', {}, when(d.last_seen))));
      const services = r.services.map((s, i) => el('tr', { 'data-service': s.service },
        el('td', {}, el('code', { text: s.service })),
        el('td', {}, s.address ? el('code', { text: s.address }) : '—'),
        el('td', {}, fig(s.calls, `services.${i}.calls`)),
        el('td', { class: s.errors ? 'bad' : null }, fig(s.errors, `services.${i}.errors`)),
        el('td', {}, fig(s.blocked, `services.${i}.blocked`)),
        el('td', {}, when(s.last_call, 'none in this period'))));
      body.replaceChildren(...(off ? [off] : []), el('p', { class: 'muted', id: 'devices-last' }, ...last),
        found.length
          ? table('Devices found', ['Kind', 'Name', 'Address', 'Found by', 'In Maestra', 'Last seen'], found, 'devices')
          : el('p', { class: 'empty', id: 'devices-empty', text: 'No device found yet.' }),
        table('Configured services', ['Service', 'Address', 'Calls', 'Errors', 'Blocked', 'Last call'], services, 'services'));
    } catch (e) { errorBox(body, e); }
  }

  async function findDevices() {
    const out = document.getElementById('devices-run');
    const button = document.getElementById('devices-find');
    state.finding = true;
    button.disabled = true;
    try {
      const job = await poll(await api('POST', '/api/services/discover', {}), out, 'Listening on the local network');
      const r = job.result;
      const lines = job.state === 'done'
        ? [`${r.devices.length} ${plural(r.devices.length, 'device', 'devices')} answered.`,
          ...(r.dropped ? [`${r.dropped} more answers were not kept.`] : []),
          ...(r.unreadable ? [`${r.unreadable} answers could not be read.`] : []), ...r.problems]
        : ['The search failed: ' + job.error.message];
      out.replaceChildren(el('p', { class: job.state === 'done' ? 'done' : 'error', role: 'status', id: 'devices-result',
        'data-job': job.id, text: lines.join(' ') }));
    } catch (e) { errorBox(out, e); }
    state.finding = false;
    await loadDevices();
  }

  // ---- tool calls waiting for approval (`ask` tools), above every section ---------------

  // A waiting call blocks an assistant until the person decides, so the list is looked at
  // again while the page is visible, not only when a section loads.
  const APPROVALS_EVERY_MS = 3000;

  async function loadApprovals() {
    const box = document.getElementById('approvals');
    let r;
    try {
      r = await api('GET', '/api/tools/approvals');
    } catch (e) {
      if (e.status !== 401) errorBox(box, e);
      box.hidden = e.status === 401;
      return;
    }
    const items = r.waiting.map((w) => el('li', { class: 'approval', 'data-approval': w.id },
      el('p', {}, el('strong', { 'data-tool': `${w.server}__${w.tool}`, text: `${w.server}__${w.tool}` }),
        ' asked by ', el('span', { 'data-asked-by': '', text: w.asked_by }), ' at ', when(w.asked_at),
        '; refused at ', when(w.expires_at), ' unless you decide.'),
      w.arguments_preview === null
        ? el('p', { class: 'note', text: `${count(w.arguments_bytes)} bytes of arguments, held by another Maestra process (not shown here).` })
        : el('pre', { class: 'args', 'data-arguments': '', text: w.arguments_preview }),
      el('p', { class: 'actions' },
        el('button', { type: 'button', 'data-decision': 'approve', text: 'Approve', onclick: () => decideCall(w.id, 'approve') }),
        ' ',
        el('button', { type: 'button', class: 'danger', 'data-decision': 'deny', text: 'Deny', onclick: () => decideCall(w.id, 'deny') }))));
    box.replaceChildren(...(items.length
      ? [el('h2', { text: `Waiting for your approval (${items.length})` }), el('ul', {}, items)]
      : []));
    box.hidden = items.length === 0;
  }

  async function decideCall(id, decision) {
    const box = document.getElementById('approvals');
    try {
      await api('POST', '/api/tools/approvals/' + encodeURIComponent(id), { decision });
    } catch (e) {
      errorBox(box, e);
      return;
    }
    await loadApprovals();
  }

  function watchApprovals() {
    if (state.approvalsTimer) return;
    loadApprovals();
    state.approvalsTimer = setInterval(() => {
      if (document.visibilityState === 'visible') loadApprovals();
    }, APPROVALS_EVERY_MS);
  }

  // ---- navigation and start ---------------------------------------------------------------

  const loaders = { report: loadReport, tools: loadTools, devices: loadDevices, spend: loadSpend, conversations: loadConversations, vault: loadVault, audit: loadAudit, controls: loadControls };

  function show() {
    const name = (location.hash || '#report').slice(1);
    const section = loaders[name] ? name : 'report';
    for (const s of Object.keys(loaders)) document.getElementById(s).hidden = s !== section;
    for (const a of document.querySelectorAll('.menu a')) {
      if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.body.dataset.section = section;
    // The Spend section says the same warnings in detail.
    const banner = document.getElementById('limit-banner');
    banner.hidden = section === 'spend' || banner.childElementCount === 0;
    window.scrollTo(0, 0);
    return loaders[section]().then(() => { document.body.dataset.loaded = section; });
  }

  function showMode(p) {
    state.mode = p.mode;
    setStatus(`${p.mode === 'cloud' ? 'Cloud' : 'Local'} mode · local-only ${p.local_only ? 'ON' : 'off'} · storage ${p.storage}`);
    // Limits near or reached are said on every section, not only in Spend.
    const c = p.cost || {};
    const own = c.user_id ? 'Your' : 'The';
    const alerts = [limitWarning(`${own} daily limit`, c.daily, 'daily'), limitWarning(`${own} monthly limit`, c.monthly, 'monthly')]
      .filter(Boolean);
    const banner = document.getElementById('limit-banner');
    banner.replaceChildren(...alerts, ...(alerts.length ? [el('a', { href: '#spend', text: 'See spend' })] : []));
    banner.hidden = alerts.length === 0 || document.body.dataset.section === 'spend';
  }

  function showLogin() {
    document.getElementById('login').hidden = false;
    for (const s of Object.keys(loaders)) document.getElementById(s).hidden = true;
    setStatus('An API key is needed.');
  }

  // Reads the mode with the key this tab holds (none in local mode), then the section.
  async function open() {
    try {
      showMode(await api('GET', '/api/privacy'));
    } catch (e) {
      if (e.status !== 401) setStatus('Error: ' + e.message);
      return;
    }
    document.getElementById('login').hidden = true;
    watchApprovals();
    show();
  }

  function start() {
    document.getElementById('tz').textContent = `Times are in your time zone (${timeZone()}); hover one for UTC.`;
    document.getElementById('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById('api-key').value);
      document.getElementById('api-key').value = '';
      open();
    });
    document.getElementById('report-period').addEventListener('change', loadReport);
    document.getElementById('tools-period').addEventListener('change', loadTools);
    document.getElementById('devices-period').addEventListener('change', loadDevices);
    document.getElementById('devices-find').addEventListener('click', findDevices);
    document.getElementById('conv-form').addEventListener('submit', (ev) => { ev.preventDefault(); state.convOffset = 0; loadConversations(); });
    document.getElementById('conv-export-user').addEventListener('click', exportUser);
    document.getElementById('conv-forget-user').addEventListener('click', forgetUser);
    document.getElementById('audit-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadAudit(); });
    window.addEventListener('hashchange', show);
    open();
  }

  document.addEventListener('DOMContentLoaded', start);
})();
