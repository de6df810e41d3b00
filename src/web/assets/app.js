// Maestra privacy center: reads the JSON API of the server that served it, nothing else.
// No framework, no other origin; charts are SVG built here. Every figure shown carries the
// API value it came from (data-figure = where in the answer, data-value = the value), so
// the browser tests can check the page says what the API says.
'use strict';

(function () {
  const KEY = 'maestra.apiKey';
  const SVG = 'http://www.w3.org/2000/svg';
  const state = { privacy: null, convOffset: 0, convLimit: 20 };

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
  const bytes = (n) => String(n) + ' B';

  // A figure: its text, and where it came from.
  function fig(value, path, fmt) {
    return el('span', { class: 'fig', 'data-figure': path, 'data-value': String(value), text: (fmt || int)(value) });
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
        el('div', { class: 'card' }, el('h3', { text: 'Blocked' }), fig(t.blocked, 'totals.blocked')),
        el('div', { class: 'card' }, el('h3', { text: 'Sent' }), fig(t.bytes_sent, 'totals.bytes_sent', bytes)),
        el('div', { class: 'card' }, el('h3', { text: 'Received' }), fig(t.bytes_received, 'totals.bytes_received', bytes)));
      const chart = barChart(`Calls and blocked attempts per day, ${r.since} to ${r.until}`,
        r.days.map((d) => d.day),
        [{ name: 'calls', cls: 's1', values: r.days.map((d) => d.calls) },
         { name: 'blocked', cls: 's2', values: r.days.map((d) => d.blocked) }]);
      const agents = r.agents.map((a, i) => el('div', { class: 'agent' },
        el('h3', { text: a.agent || '(no agent or surface)' }),
        el('p', {}, fig(a.totals.calls, `agents.${i}.totals.calls`), ' calls, ',
          fig(a.totals.blocked, `agents.${i}.totals.blocked`), ' blocked, ',
          fig(a.totals.bytes_sent, `agents.${i}.totals.bytes_sent`, bytes), ' sent, ',
          fig(a.totals.bytes_received, `agents.${i}.totals.bytes_received`, bytes), ' received'),
        table('Services and hosts contacted', ['Service', 'Host', 'Calls', 'Blocked', 'Sent', 'Received', ''],
          a.destinations.map((d, j) => el('tr', {},
            el('td', { text: d.service }), el('td', { text: d.host || '—' }),
            el('td', {}, fig(d.calls, `agents.${i}.destinations.${j}.calls`)),
            el('td', {}, fig(d.blocked, `agents.${i}.destinations.${j}.blocked`)),
            el('td', {}, fig(d.bytes_sent, `agents.${i}.destinations.${j}.bytes_sent`, bytes)),
            el('td', {}, fig(d.bytes_received, `agents.${i}.destinations.${j}.bytes_received`, bytes)),
            el('td', {}, el('a', { href: '#audit', 'data-service': d.service, onclick: (ev) => openAudit(ev, d.service, period), text: 'audit entries' }))))),
        a.blocked_reasons.length ? el('ul', { class: 'reasons', 'aria-label': 'Why calls were blocked' },
          a.blocked_reasons.map((b, j) => el('li', {}, fig(b.count, `agents.${i}.blocked_reasons.${j}.count`), ' blocked: ', b.reason || '(no reason recorded)'))) : null));
      const top = table('Most-contacted hosts', ['Host', 'Service', 'Calls', 'Blocked'],
        r.top_hosts.map((h, i) => el('tr', {}, el('td', { text: h.host || '—' }), el('td', { text: h.service }),
          el('td', {}, fig(h.calls, `top_hosts.${i}.calls`)), el('td', {}, fig(h.blocked, `top_hosts.${i}.blocked`)))));
      body.replaceChildren(el('p', { class: 'muted', text: `${r.since} to ${r.until} (UTC), through audit entry #${r.through_seq}` }),
        cards, chart, el('h3', { text: 'By agent or surface' }),
        ...(agents.length ? agents : [el('p', { class: 'empty', text: 'No calls in this period.' })]), top);
    } catch (e) { errorBox(body, e); }
  }

  function openAudit(ev, service, period) {
    ev.preventDefault();
    document.getElementById('audit-service').value = service;
    document.getElementById('audit-period').value = period;
    location.hash = '#audit';
  }

  async function loadSpend() {
    const body = document.getElementById('spend-body');
    try {
      const s = await api('GET', '/api/spend?days=30');
      const limit = (name, p) => el('div', { class: 'card' }, el('h3', { text: name }),
        el('p', {}, fig(p.spent_usd, `limits.${name.toLowerCase()}.spent_usd`, usd), ' spent'),
        el('p', {}, fig(p.reserved_usd, `limits.${name.toLowerCase()}.reserved_usd`, usd), ' reserved'),
        el('p', {}, 'of ', fig(p.limit_usd, `limits.${name.toLowerCase()}.limit_usd`, usd)),
        el('p', { class: 'muted', text: 'resets ' + p.resets_at }));
      const days = [];
      const byDay = Object.fromEntries(s.by_day.map((d) => [d.key, d.usd]));
      const start = new Date(s.since + 'T00:00:00Z');
      for (let i = 0; i <= s.days; i++) {
        const d = new Date(start.getTime() + i * 86400000).toISOString().slice(0, 10);
        days.push(d);
      }
      const group = (title, rows, path) => table(title, ['', 'Spent'], rows.map((r, i) => el('tr', {},
        el('td', { text: r.key }), el('td', {}, fig(r.usd, `${path}.${i}.usd`, usd)))));
      body.replaceChildren(
        el('div', { class: 'cards' }, limit('Daily', s.limits.daily), limit('Monthly', s.limits.monthly),
          el('div', { class: 'card' }, el('h3', { text: 'Since ' + s.since }), fig(s.total_usd, 'total_usd', usd))),
        barChart('Spend per day, last 30 days (USD)', days, [{ name: 'USD', cls: 's1', values: days.map((d) => byDay[d] || 0) }], usd),
        group('By day', s.by_day, 'by_day'), group('By model', s.by_model, 'by_model'), group('By user', s.by_user, 'by_user'));
    } catch (e) { errorBox(body, e); }
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
        el('td', {}, fig(c.message_count, `conversations.${i}.message_count`)), el('td', { text: c.updated_at }),
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
          el('strong', { text: m.role + ' ' }), el('span', { class: 'muted', text: m.timestamp }), el('p', { text: m.content })))));
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

  async function loadVault() {
    const body = document.getElementById('vault-body');
    try {
      const v = await api('GET', '/api/vault');
      const rows = v.secrets.map((s, i) => el('tr', {},
        el('td', {}, el('code', { text: s.name })),
        el('td', { 'data-figure': `secrets.${i}.encrypted`, 'data-value': String(s.encrypted), text: s.encrypted ? 'encrypted' : 'NOT encrypted' }),
        el('td', { text: s.updated_at || '—' }),
        el('td', { text: s.last_used || 'never (in the audit log)' }),
        el('td', { text: s.used_by.join(', ') || '—' })));
      const out = el('div', { id: 'vault-rotation' });
      body.replaceChildren(
        el('dl', { class: 'facts' },
          el('dt', { text: 'Key source' }), el('dd', { 'data-figure': 'key_source', 'data-value': v.key_source, text: v.key_source }),
          el('dt', { text: 'Key status' }), el('dd', { 'data-figure': 'key_status', 'data-value': v.key_status, text: v.key_status }),
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

  function chainText(job) {
    if (!job) return 'Not verified yet in this session of the server.';
    if (job.state === 'running') return 'Verifying…';
    if (job.state === 'failed') return 'The verify could not run: ' + job.error.message;
    const r = job.result;
    if (r.ok) return `Verified through entry #${r.through_seq} at ${job.finished_at} (${r.entries} entries in ${r.files} file(s)).`;
    const p = r.problem;
    return `BROKEN: ${p.file}${p.line ? ' line ' + p.line : ''}: ${p.message} (verified ${r.entries} entries before it)`;
  }

  async function loadChain() {
    const box = document.getElementById('audit-chain');
    try {
      const { job } = await api('GET', '/api/audit/verify');
      const cls = !job || job.state === 'running' ? 'muted' : job.state === 'failed' || !job.result.ok ? 'error' : 'chain';
      const line = el('p', { id: 'chain-state', class: cls, text: chainText(job) });
      const out = el('div');
      const button = el('button', { type: 'button', id: 'audit-verify', onclick: async () => {
        try {
          const done = await poll(await api('POST', '/api/audit/verify', {}), out, 'Verifying');
          out.replaceChildren();
          line.textContent = chainText(done);
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
      const detail = (d) => ['host', 'bytes_sent', 'bytes_received', 'reason', 'model', 'status', 'error']
        .filter((k) => d[k] !== undefined).map((k) => el('div', { text: `${k}: ${d[k]}` }));
      const rows = r.entries.map((e) => el('tr', { id: 'audit-seq-' + e.seq },
        el('td', { text: '#' + e.seq }), el('td', { text: e.ts }), el('td', { text: e.user_id || '—' }),
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

  // ---- navigation and start ---------------------------------------------------------------

  const loaders = { report: loadReport, spend: loadSpend, conversations: loadConversations, vault: loadVault, audit: loadAudit, controls: loadControls };

  function show() {
    const name = (location.hash || '#report').slice(1);
    const section = loaders[name] ? name : 'report';
    for (const s of Object.keys(loaders)) document.getElementById(s).hidden = s !== section;
    for (const a of document.querySelectorAll('.menu a')) {
      if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.body.dataset.section = section;
    window.scrollTo(0, 0);
    return loaders[section]().then(() => { document.body.dataset.loaded = section; });
  }

  function showMode(p) {
    setStatus(`${p.mode === 'cloud' ? 'Cloud' : 'Local'} mode · local-only ${p.local_only ? 'ON' : 'off'} · storage ${p.storage}`);
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
    show();
  }

  function start() {
    document.getElementById('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById('api-key').value);
      document.getElementById('api-key').value = '';
      open();
    });
    document.getElementById('report-period').addEventListener('change', loadReport);
    document.getElementById('conv-form').addEventListener('submit', (ev) => { ev.preventDefault(); state.convOffset = 0; loadConversations(); });
    document.getElementById('conv-export-user').addEventListener('click', exportUser);
    document.getElementById('conv-forget-user').addEventListener('click', forgetUser);
    document.getElementById('audit-form').addEventListener('submit', (ev) => { ev.preventDefault(); loadAudit(); });
    window.addEventListener('hashchange', show);
    open();
  }

  document.addEventListener('DOMContentLoaded', start);
})();
