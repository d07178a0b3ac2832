//! A run as one self-contained HTML page: `distsync report`.
//!
//! Everything is inline (data as JSON, drawing code, styles): no network,
//! no CDN. The page draws a Lamport diagram (one lane per endpoint, time
//! downward, an arrow per message from send to delivery), Raft role bands
//! on the node lanes, faults across the lanes, the violation as a red line
//! linked from the verdicts; below it, timelines that follow the diagram's
//! window (lock holders and waiters, queue depth per shard, each busy cache
//! key's MESI state per node) and the run's latency histograms.
//!
//! Large runs stay responsive because the page draws only the time window
//! on screen, and only up to `MAX_ARROWS` arrows: a window holding more
//! messages is drawn as per-lane density bars until zoomed in. The data
//! itself is compact arrays, about 30 bytes a message; queue depth is
//! bucketed into 600 slices of the run (see `timelines`).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use super::timelines::{Latencies, Line, LockTimelines, QueueDepth};
use crate::run::RunReport;

/// What the page shows besides the trace.
pub struct PageInfo<'a> {
    pub title: &'a str,
    pub seed: Option<u64>,
    /// The run's summary, when the page is made from a run (not a trace file).
    pub report: Option<&'a RunReport>,
}

/// The report page for a run's trace lines.
pub fn render_page(info: &PageInfo, trace: &[String]) -> String {
    let data = page_data(info, trace);
    // Inside <script> only `<` can end the block or start a comment: JSON
    // strings are the only place it can appear, and \u003c reads the same.
    let data = data
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n<div id=\"summary\"></div>\n<div id=\"controls\"></div>\n<div id=\"diagram\"></div>\n<p class=\"note\">The timelines below follow the diagram's time window, left to right.</p>\n<h2>Lock holders and waiters</h2><div id=\"locks\"></div>\n<h2>Queue depth</h2><div id=\"queue\"></div>\n<h2>Cache lines</h2><div id=\"caches\"></div>\n<h2>Latencies</h2><div id=\"latency\"></div>\n<script type=\"application/json\" id=\"data\">{data}</script>\n<script>{SCRIPT}</script>\n</body></html>\n",
        title = escape(info.title),
    )
}

/// The page's data: lanes, messages, roles, faults, cache states, verdicts.
fn page_data(info: &PageInfo, trace: &[String]) -> Value {
    let mut lanes: Vec<String> = Vec::new();
    let mut lane_of = BTreeMap::new();
    let mut lane = |name: &str, lanes: &mut Vec<String>| -> usize {
        *lane_of.entry(name.to_string()).or_insert_with(|| {
            lanes.push(name.to_string());
            lanes.len() - 1
        })
    };
    let mut types: Vec<(String, &'static str)> = Vec::new();
    let mut type_of: BTreeMap<String, usize> = BTreeMap::new();
    // Sends waiting for their delivery or drop, by (from, to, message):
    // paired in order, which reordering can swap (the page says so).
    let mut in_flight: BTreeMap<(usize, usize, usize), VecDeque<usize>> = BTreeMap::new();
    let mut msgs: Vec<[i64; 6]> = Vec::new();
    let mut roles = Vec::new();
    let mut faults = Vec::new();
    let mut cache = Vec::new();
    let mut end_ns = 0u64;
    let mut events = 0u64;
    let mut queue_run = false;
    let mut locks = LockTimelines::default();
    let mut depth = QueueDepth::default();
    let mut latencies = Latencies::default();
    for line in trace {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        events += 1;
        let t = v["t"].as_u64().unwrap_or(0);
        end_ns = end_ns.max(t);
        let kind = v["kind"].as_str().unwrap_or("");
        let node = v["node"].as_str().unwrap_or("");
        queue_run |= kind.starts_with("queue.");
        let seen = Line {
            t,
            node,
            kind,
            v: &v,
        };
        locks.observe(&seen);
        depth.observe(&seen);
        latencies.observe(&seen);
        match kind {
            "net.send" | "net.deliver" | "net.drop" => {
                let (Some(from), Some(to), Some(msg)) =
                    (v["from"].as_str(), v["to"].as_str(), v["msg"].as_str())
                else {
                    continue;
                };
                let (f, d) = (lane(from, &mut lanes), lane(to, &mut lanes));
                let ty = *type_of.entry(msg.to_string()).or_insert_with(|| {
                    types.push((msg.to_string(), protocol(msg)));
                    types.len() - 1
                });
                let key = (f, d, ty);
                if kind == "net.send" {
                    in_flight.entry(key).or_default().push_back(msgs.len());
                    msgs.push([t as i64, -1, f as i64, d as i64, ty as i64, 0]);
                } else if let Some(i) = in_flight.get_mut(&key).and_then(|q| q.pop_front()) {
                    msgs[i][1] = t as i64;
                    msgs[i][5] = i64::from(kind == "net.drop");
                }
            }
            "raft.role" => {
                let l = lane(node, &mut lanes);
                roles.push(json!([l, t, v["role"], v["term"]]));
            }
            "cache.transition" => {
                let l = lane(node, &mut lanes);
                cache.push(json!([l, v["key"], t, v["to"]]));
            }
            k if k.starts_with("fault.") => {
                let l = if node == "net" {
                    -1
                } else {
                    lane(node, &mut lanes) as i64
                };
                if k == "fault.crash" && l >= 0 {
                    // A crashed node leads nothing: its role band ends.
                    roles.push(json!([l, t, "down", 0]));
                }
                let mut text = k.trim_start_matches("fault.").to_string();
                if let Some(g) = v.get("groups") {
                    text += &format!(" {g}");
                }
                faults.push(json!([t, k.trim_start_matches("fault."), l, text]));
            }
            _ => {}
        }
    }
    // A shard answers queue calls in a queue run and memory calls in a
    // cache run.
    for (name, proto) in &mut types {
        if name == "ShardAnswer" {
            *proto = if queue_run { "queue" } else { "cache" };
        }
    }
    let report = info.report;
    let end_ns = report.map_or(end_ns, |r| r.sim_time_ns.max(end_ns));
    let locks = locks.finish(end_ns);
    let acquires = report
        .and_then(|r| r.locks.as_ref())
        .map(|l| l.acquire_latencies_ns.clone())
        .unwrap_or_default();
    let violation = report.and_then(|r| r.violation.as_ref()).map(|f| {
        json!({
            "t": f.t_ns, "seq": f.seq,
            "text": format!("{}: {}", f.violation.invariant, f.violation.detail),
        })
    });
    let checks: Vec<Value> = report
        .map(|r| {
            r.checks
                .iter()
                .map(|c| json!([c.name, c.verdict.name(), c.detail]))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "title": info.title,
        "seed": info.seed,
        "passed": report.map(|r| r.passed()),
        "budget_exceeded": report.and_then(|r| r.budget_exceeded).map(|b| b.to_string()),
        "digest": report.map(|r| r.digest_hex()),
        "end_ns": end_ns,
        "events": events,
        "violation": violation,
        "checks": checks,
        "lanes": lanes,
        "types": types,
        "msgs": msgs,
        "roles": roles,
        "faults": faults,
        "cache": cache,
        "locks": locks.json,
        "queue_depth": depth.finish(end_ns),
        "latencies": latencies.finish(locks.waits_ns, acquires),
    })
}

/// Which protocol a message name belongs to, for the page's filters.
fn protocol(msg: &str) -> &'static str {
    match msg {
        "PreVote" | "PreVoteResp" | "Vote" | "VoteResp" | "Append" | "AppendResp" | "Snapshot"
        | "SnapshotResp" | "TimeoutNow" => "raft",
        // Replies go to key-value and lock clients alike.
        "Get" | "Put" | "Reply" => "client",
        "ResourceWrite" | "ResourceAck" => "lock",
        "BusRd" | "BusRdX" | "BusUpgr" | "Flush" | "Snoop" | "SnoopReply" | "Grant" | "Done"
        | "WriteBack" | "FlushAck" | "Recover" | "Report" | "GetS" | "GetM" | "Upgrade"
        | "PutM" | "Fwd-GetS" | "Inv" | "Data" | "Ack" | "Unblock" | "MemGet" | "MemSet" => "cache",
        m if m.starts_with("Lock") => "lock",
        _ => "queue",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Most arrows drawn at once; a busier window is drawn as density bars.
pub const MAX_ARROWS: usize = 3000;

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 8px} h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
.ok{color:#1a7f37}.bad{color:#c62828;font-weight:600}.undecided{color:#b26a00;font-weight:600}
#controls{margin:10px 0;display:flex;flex-wrap:wrap;gap:10px;align-items:center}
#controls button{padding:2px 10px}
#diagram{border:1px solid #ddd;overflow:auto;max-height:75vh;position:relative}
svg text{font:11px system-ui,sans-serif}
.lane{stroke:#999;stroke-width:1}
.msg{stroke-width:1;fill:none}
.msg:hover{stroke-width:3}
.drop{stroke-dasharray:3 3}
.viol{stroke:#c62828;stroke-width:2}
.note{color:#666;font-size:12px}
.legend span{display:inline-block;width:12px;height:12px;margin:0 3px 0 8px;vertical-align:middle}
"#;

const SCRIPT: &str = r##"
"use strict";
const D = JSON.parse(document.getElementById('data').textContent);
const MAX_ARROWS = 3000, LANE_W = 110, LEFT = 80, HEIGHT = 900;
const PROTO_COLOR = {raft:'#1f77b4', client:'#7f7f7f', lock:'#9467bd', queue:'#2ca02c', cache:'#d62728'};
const ROLE_COLOR = {leader:'#f2c14e', candidate:'#f08a4b', precandidate:'#f7c6d9'};
const STATE_COLOR = {M:'#d62728', E:'#ff7f0e', S:'#2ca02c', I:null};
const NS = 'http://www.w3.org/2000/svg';
let view = {t0: 0, t1: Math.max(D.end_ns, 1)};
const shownProto = {raft:true, client:true, lock:true, queue:true, cache:true};
const hiddenType = new Set();

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
let digits = 6;
function fmt(ns) { return (ns / 1e9).toFixed(digits) + 's'; }
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c])); }

function summary() {
  const s = document.getElementById('summary');
  let h = '<p>';
  if (D.seed !== null) h += 'seed ' + D.seed + ' &middot; ';
  h += D.events + ' trace events &middot; ' + fmt(D.end_ns) + ' simulated';
  if (D.digest) h += ' &middot; digest ' + D.digest;
  if (D.budget_exceeded) h += ' &middot; <span class="undecided">budget exceeded</span>';
  else if (D.passed !== null) h += ' &middot; <span class="' + (D.passed ? 'ok">passed' : 'bad">FAILED') + '</span>';
  const undecided = D.checks.filter(c => c[1] === 'inconclusive').length;
  if (undecided) h += ' &middot; <span class="undecided">' + undecided + ' inconclusive</span>';
  h += '</p>';
  if (D.violation) {
    h += '<p class="bad">Violation at ' + fmt(D.violation.t) + ' (trace event ' + D.violation.seq + '): ' +
      esc(D.violation.text) + ' <a href="#" id="goviol">show it in the diagram</a></p>';
  }
  if (D.checks.length) {
    h += '<table><tr><th>check</th><th>verdict</th><th>detail</th></tr>';
    for (const [name, verdict, detail] of D.checks) {
      const cell = verdict === 'passed' ? 'ok">ok' : verdict === 'failed' ? 'bad">FAILED' : 'undecided">' + esc(verdict);
      h += '<tr><td>' + esc(name) + '</td><td class="' + cell + '</td><td>' + esc(detail) + '</td></tr>';
    }
    h += '</table>';
    if (D.checks.some(c => c[1] === 'inconclusive')) {
      h += '<p class="note">An inconclusive check ran out of its search budget before deciding: it is not a violation and does not fail the run.</p>';
    }
    if (D.budget_exceeded) {
      h += '<p class="note">The run was stopped by its budget before its end (' + esc(D.budget_exceeded) + '): not a violation, and not a pass; the end-of-run checks were not made.</p>';
    }
  }
  s.innerHTML = h;
  const g = document.getElementById('goviol');
  if (g) g.onclick = ev => { ev.preventDefault(); const w = Math.max(D.end_ns / 200, 2e6);
    setView(D.violation.t - w, D.violation.t + w / 4); };
}

function controls() {
  const c = document.getElementById('controls');
  const b = (label, f) => { const x = document.createElement('button'); x.textContent = label; x.onclick = f; c.appendChild(x); };
  b('zoom in', () => zoom(0.5, (view.t0 + view.t1) / 2));
  b('zoom out', () => zoom(2, (view.t0 + view.t1) / 2));
  b('earlier', () => pan(-0.5));
  b('later', () => pan(0.5));
  b('whole run', () => setView(0, D.end_ns));
  for (const p of Object.keys(PROTO_COLOR)) {
    if (!D.types.some(t => t[1] === p)) continue;
    const l = document.createElement('label');
    l.innerHTML = '<input type="checkbox" checked> <span style="color:' + PROTO_COLOR[p] + '">' + p + '</span>';
    l.firstChild.onchange = e => { shownProto[p] = e.target.checked; draw(); };
    c.appendChild(l);
  }
  const sel = document.createElement('select');
  sel.multiple = true; sel.size = 1; sel.title = 'hide message types (ctrl-click)';
  for (const [name] of D.types) { const o = document.createElement('option'); o.textContent = name; sel.appendChild(o); }
  sel.onchange = () => { hiddenType.clear(); for (const o of sel.selectedOptions) hiddenType.add(o.textContent); draw(); };
  const lab = document.createElement('label'); lab.textContent = 'hide types: '; lab.appendChild(sel); c.appendChild(lab);
  const info = document.createElement('span'); info.id = 'window'; c.appendChild(info);
}

// The window: at least 100 ns wide, kept within the run, around `at`.
function setView(t0, t1) {
  const end = Math.max(D.end_ns, 1), w = Math.min(end, Math.max(100, t1 - t0));
  t0 = Math.min(Math.max(0, t0), end - w);
  view = {t0: t0, t1: t0 + w}; draw();
}
function zoom(f, at) { setView(at - (at - view.t0) * f, at + (view.t1 - at) * f); }
function pan(f) { const w = view.t1 - view.t0; setView(view.t0 + w * f, view.t1 + w * f); }

function draw() {
  const host = document.getElementById('diagram');
  host.innerHTML = '';
  const W = LEFT + D.lanes.length * LANE_W + 20, H = HEIGHT;
  const svg = el('svg', {width: W, height: H + 40, id: 'lamport'}, host);
  const y = t => 30 + (t - view.t0) / (view.t1 - view.t0) * H;
  const x = i => LEFT + i * LANE_W + LANE_W / 2;
  const inView = t => t >= view.t0 && t <= view.t1;
  // Enough decimals for ticks a tenth of the window apart to differ.
  digits = Math.min(9, Math.max(3, Math.ceil(-Math.log10((view.t1 - view.t0) / 10 / 1e9)) + 1));
  // Time ticks.
  for (let k = 0; k <= 10; k++) {
    const t = view.t0 + (view.t1 - view.t0) * k / 10;
    el('line', {x1: LEFT - 6, x2: W, y1: y(t), y2: y(t), stroke: '#eee'}, svg);
    el('text', {x: 4, y: y(t) + 4}, svg).textContent = fmt(t);
  }
  // Faults: partitions and network changes shade every lane; a node's own
  // faults mark its lane.
  let open = null;
  for (const [t, kind, lane, text] of D.faults) {
    if (kind === 'partition' || kind === 'partition_oneway') { if (open === null) open = t; }
    if (kind === 'heal' && open !== null) { shade(open, t); open = null; }
    if (lane >= 0 && inView(t)) {
      const m = el('rect', {x: x(lane) - 40, y: y(t) - 2, width: 80, height: 4, fill: kind === 'crash' ? '#c62828' : '#555'}, svg);
      el('title', {}, m).textContent = text + ' at ' + fmt(t);
      el('text', {x: x(lane) + 4, y: y(t) - 4, fill: '#555'}, svg).textContent = kind;
    }
  }
  if (open !== null) shade(open, D.end_ns);
  function shade(a, b) {
    if (b < view.t0 || a > view.t1) return;
    const r = el('rect', {x: LEFT, y: y(Math.max(a, view.t0)), width: W - LEFT, height: Math.max(1, y(Math.min(b, view.t1)) - y(Math.max(a, view.t0))), fill: '#999', 'fill-opacity': 0.12}, svg);
    el('title', {}, r).textContent = 'partitioned ' + fmt(a) + ' to ' + fmt(b);
  }
  // Raft roles: a band beside each node lane while it is not a follower.
  const last = {};
  const band = (lane, a, b, role, term) => {
    if (!ROLE_COLOR[role] || b < view.t0 || a > view.t1) return;
    const r = el('rect', {x: x(lane) - 8, y: y(Math.max(a, view.t0)), width: 6, height: Math.max(1, y(Math.min(b, view.t1)) - y(Math.max(a, view.t0))), fill: ROLE_COLOR[role]}, svg);
    el('title', {}, r).textContent = D.lanes[lane] + ' ' + role + ' in term ' + term;
    // A leader's term is written where its band starts.
    if (role === 'leader' && a >= view.t0) el('text', {x: x(lane) - 12, y: y(a) + 10, 'text-anchor': 'end', fill: '#a07800'}, svg).textContent = 'term ' + term;
  };
  for (const [lane, t, role, term] of D.roles) {
    if (last[lane]) band(lane, last[lane][0], t, last[lane][1], last[lane][2]);
    last[lane] = [t, role, term];
  }
  for (const lane in last) band(+lane, last[lane][0], D.end_ns, last[lane][1], last[lane][2]);
  // Lanes.
  D.lanes.forEach((name, i) => {
    el('line', {class: 'lane', x1: x(i), x2: x(i), y1: 24, y2: H + 30}, svg);
    el('text', {x: x(i) - 10, y: 14}, svg).textContent = name;
  });
  // Messages in the window.
  const shown = D.msgs.filter(m => {
    const [ts, tr, , , ty] = m, end = tr < 0 ? ts : tr;
    return end >= view.t0 && ts <= view.t1 && shownProto[D.types[ty][1]] && !hiddenType.has(D.types[ty][0]);
  });
  const info = document.getElementById('window');
  if (shown.length > MAX_ARROWS) {
    // Too many to draw: messages sent per lane in each of 200 time slices.
    const B = 200, counts = D.lanes.map(() => new Array(B).fill(0));
    for (const [ts, , f] of shown) { const k = Math.min(B - 1, Math.floor((ts - view.t0) / (view.t1 - view.t0) * B)); if (k >= 0) counts[f][k]++; }
    const max = Math.max(1, ...counts.map(c => Math.max(...c)));
    counts.forEach((c, lane) => c.forEach((n, k) => {
      if (!n) return;
      const t = view.t0 + (view.t1 - view.t0) * k / B;
      el('rect', {x: x(lane) + 2, y: y(t), width: 40 * n / max + 1, height: Math.max(1, H / B), fill: '#1f77b4', 'fill-opacity': 0.6}, svg);
    }));
    info.textContent = shown.length + ' messages in this window: drawn as messages sent per lane; zoom in to see each one';
  } else {
    for (const [ts, tr, f, to, ty, dropped] of shown) {
      const [name, proto] = D.types[ty];
      const end = tr < 0 ? ts + (view.t1 - view.t0) / 100 : tr;
      const line = el('line', {class: 'msg' + (dropped || tr < 0 ? ' drop' : ''), x1: x(f), y1: y(ts), x2: x(to), y2: y(end), stroke: PROTO_COLOR[proto]}, svg);
      el('title', {}, line).textContent = name + ' ' + D.lanes[f] + ' \u2192 ' + D.lanes[to] + ' sent ' + fmt(ts) +
        (tr < 0 ? ' (never delivered)' : (dropped ? ' dropped ' : ' delivered ') + fmt(tr));
    }
    info.textContent = shown.length + ' messages in ' + fmt(view.t0) + ' \u2013 ' + fmt(view.t1);
  }
  if (D.violation && inView(D.violation.t)) {
    el('line', {class: 'viol', x1: LEFT, x2: W, y1: y(D.violation.t), y2: y(D.violation.t), id: 'violation'}, svg);
    el('text', {x: LEFT + 4, y: y(D.violation.t) - 4, fill: '#c62828'}, svg).textContent = 'violation: ' + D.violation.text.slice(0, 120);
  }
  locks(); queue(); caches();
  // Ctrl or Alt with the wheel zooms around the pointer; the wheel alone scrolls.
  svg.addEventListener('wheel', e => { if (!e.ctrlKey && !e.altKey) return; e.preventDefault(); const r = svg.getBoundingClientRect();
    const t = view.t0 + (e.clientY - r.top - 30) / H * (view.t1 - view.t0); zoom(e.deltaY < 0 ? 0.8 : 1.25, t); }, {passive: false});
}

// The lower timelines share the diagram's window, left to right.
const TL_LEFT = 130, TL_W = 900;
function tx(t) { return TL_LEFT + (t - view.t0) / (view.t1 - view.t0) * TL_W; }
// A span's visible part as [x, width], or null outside the window.
function clip(a, b) {
  if (b < view.t0 || a > view.t1) return null;
  const x0 = tx(Math.max(a, view.t0)), x1 = tx(Math.min(b, view.t1));
  return [x0, Math.max(1, x1 - x0)];
}
function axis(svg, y) {
  for (let k = 0; k <= 5; k++) {
    const t = view.t0 + (view.t1 - view.t0) * k / 5;
    el('line', {x1: tx(t), x2: tx(t), y1: 0, y2: y, stroke: '#eee'}, svg);
    el('text', {x: tx(t) - 20, y: y + 12, fill: '#666'}, svg).textContent = fmt(t);
  }
}
function dur(ns) {
  if (ns < 1e3) return ns + 'ns';
  if (ns < 1e6) return +(ns / 1e3).toFixed(1) + '\u00b5s';
  if (ns < 1e9) return +(ns / 1e6).toFixed(1) + 'ms';
  return +(ns / 1e9).toFixed(2) + 's';
}
function section(id, text) { const host = document.getElementById(id); host.innerHTML = ''; if (text) host.textContent = text; return host; }

function locks() {
  const L = D.locks;
  if (!L || !L.spans.length) { section('locks', 'No locks in this run.'); return; }
  const host = section('locks');
  const byLock = new Map();
  for (const s of L.spans) { if (!byLock.has(s[0])) byLock.set(s[0], []); byLock.get(s[0]).push(s); }
  const busiest = [...byLock.keys()].sort((a, b) => byLock.get(b).length - byLock.get(a).length).slice(0, 12).sort((a, b) => a - b);
  const rows = [];
  for (const lock of busiest) for (const s of [...new Set(byLock.get(lock).map(s => s[1]))].sort((a, b) => a - b)) rows.push([lock, s]);
  const ROW = 14, svg = el('svg', {width: TL_LEFT + TL_W + 40, height: rows.length * ROW + 30, id: 'lock-timelines'}, host);
  axis(svg, rows.length * ROW + 4);
  const rowOf = new Map(rows.map((r, i) => [r[0] + '/' + r[1], i]));
  rows.forEach(([lock, s], i) => { el('text', {x: 0, y: i * ROW + 11}, svg).textContent = 'lock ' + lock + '  s' + s; });
  for (const [lock, s, what, a, b, mode, detail] of L.spans) {
    const i = rowOf.get(lock + '/' + s), c = clip(a, b);
    if (i === undefined || !c) continue;
    const hold = what === 'hold';
    const r = el('rect', {x: c[0], y: i * ROW + (hold ? 1 : 5), width: c[1], height: hold ? ROW - 3 : 4,
      fill: hold ? (mode === 'shared' ? '#c5b0d5' : '#9467bd') : '#aaa'}, svg);
    el('title', {}, r).textContent = 's' + s + (hold ? ' held ' : ' waited for ') + 'lock ' + lock + ' ' + mode + ' ' + fmt(a) + ' \u2013 ' + fmt(b) + ' (' + dur(b - a) + '): ' + detail;
  }
  for (const [t, victim, cycle, waited] of L.deadlocks) {
    if (t < view.t0 || t > view.t1) continue;
    rows.forEach(([lock, s], i) => {
      if (s !== victim || (waited !== null && lock !== waited)) return;
      const m = el('rect', {x: tx(t) - 2, y: i * ROW, width: 4, height: ROW - 1, fill: '#c62828'}, svg);
      el('title', {}, m).textContent = 'deadlock ' + cycle + ' at ' + fmt(t) + ': s' + victim + "'s request cancelled";
    });
  }
  const legend = document.createElement('p'); legend.className = 'legend';
  legend.innerHTML = 'as first applied by any replica' + (byLock.size > 12 ? ', the 12 busiest of ' + byLock.size + ' locks' : '') +
    ':<span style="background:#9467bd"></span>held exclusive<span style="background:#c5b0d5"></span>held shared<span style="background:#aaa"></span>waiting<span style="background:#c62828"></span>deadlock victim';
  host.prepend(legend);
}

function queue() {
  const Q = D.queue_depth;
  if (!Q) { section('queue', 'No queue in this run.'); return; }
  const host = section('queue');
  if (Q.cut_at_ns !== null) {
    const cut = document.createElement('p'); cut.className = 'note';
    cut.textContent = 'The counts stop at ' + dur(Q.cut_at_ns) + ': the trace\'s batches add up to more than ' + Q.max_followed + ' messages, the most the report follows one by one.';
    host.append(cut);
  }
  if (!Q.series.length) return;
  const H = 160, svg = el('svg', {width: TL_LEFT + TL_W + 40, height: H + 30, id: 'queue-depth'}, host);
  const k0 = Math.max(0, Math.floor(view.t0 / Q.bucket_ns)), k1 = Math.min(Q.series[0][0].length - 1, Math.floor(view.t1 / Q.bucket_ns));
  let max = 1;
  for (const s of Q.series) for (const line of s) for (let k = k0; k <= k1; k++) max = Math.max(max, line[k]);
  axis(svg, H + 4);
  el('text', {x: 0, y: 10}, svg).textContent = max + ' messages';
  el('text', {x: 0, y: H}, svg).textContent = '0';
  const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
  const DASH = ['', '5 3', '1 3'];
  Q.series.forEach((s, i) => s.forEach((line, j) => {
    // A step per slice, clipped to the window, so even a window inside one
    // slice draws its level.
    const pts = [];
    for (let k = k0; k <= k1; k++) {
      const yk = (H - line[k] / max * (H - 14)).toFixed(1);
      pts.push(tx(Math.max(k * Q.bucket_ns, view.t0)).toFixed(1) + ',' + yk, tx(Math.min((k + 1) * Q.bucket_ns, view.t1)).toFixed(1) + ',' + yk);
    }
    const p = el('polyline', {points: pts.join(' '), fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 1.5, 'stroke-dasharray': DASH[j]}, svg);
    el('title', {}, p).textContent = Q.shards[i] + ' ' + ['ready', 'in flight', 'dead-lettered'][j];
  }));
  const legend = document.createElement('p'); legend.className = 'legend';
  legend.innerHTML = 'messages per shard, the most in each ' + dur(Q.bucket_ns) + ' slice; solid ready, dashed in flight, dotted dead-lettered:' +
    Q.shards.map((n, i) => '<span style="background:' + COLORS[i % COLORS.length] + '"></span>' + esc(n)).join('');
  host.prepend(legend);
}

function caches() {
  if (!D.cache.length) { section('caches', 'No cache in this run.'); return; }
  const host = section('caches');
  const byKey = new Map();
  for (const c of D.cache) { if (!byKey.has(c[1])) byKey.set(c[1], []); byKey.get(c[1]).push(c); }
  const keys = [...byKey.keys()].sort((a, b) => byKey.get(b).length - byKey.get(a).length).slice(0, 12).sort((a, b) => a - b);
  const nodes = [...new Set(D.cache.map(c => c[0]))].sort((a, b) => a - b);
  const ROW = 12, height = keys.length * (nodes.length * ROW + 10);
  const svg = el('svg', {width: TL_LEFT + TL_W + 40, height: height + 30, id: 'cache-lines'}, host);
  axis(svg, height + 4);
  let top = 10;
  for (const k of keys) {
    el('text', {x: 0, y: top + 10}, svg).textContent = 'key ' + k;
    for (const n of nodes) {
      el('text', {x: 60, y: top + 10, fill: '#666'}, svg).textContent = D.lanes[n];
      const tl = byKey.get(k).filter(c => c[0] === n);
      tl.forEach((c, i) => {
        const color = STATE_COLOR[c[3]]; if (!color) return;
        const t1 = i + 1 < tl.length ? tl[i + 1][2] : D.end_ns, x = clip(c[2], t1);
        if (!x) return;
        const r = el('rect', {x: x[0], y: top, width: x[1], height: ROW - 2, fill: color}, svg);
        el('title', {}, r).textContent = D.lanes[n] + ' key ' + k + ': ' + c[3] + ' from ' + fmt(c[2]);
      });
      top += ROW;
    }
    top += 10;
  }
  const legend = document.createElement('p'); legend.className = 'legend';
  legend.innerHTML = 'the 12 busiest keys:' + Object.entries(STATE_COLOR).filter(e => e[1]).map(([s, c]) => '<span style="background:' + c + '"></span>' + s).join('');
  host.prepend(legend);
}

// Latencies are for the whole run: drawn once, not per window.
function latency() {
  if (!D.latencies.length) { section('latency', 'Nothing in this run waited on a client.'); return; }
  const host = section('latency');
  for (const h of D.latencies) {
    const W = 460, H = 110, bw = Math.min(40, (W - 40) / h.buckets.length);
    const box = document.createElement('div'); box.style.display = 'inline-block'; box.style.margin = '0 18px 12px 0';
    box.innerHTML = '<div>' + esc(h.name) + '</div><div class="note">' + h.count + ' samples; p50 ' + dur(h.p50) + ', p99 ' + dur(h.p99) + ', max ' + dur(h.max) + '</div>';
    const svg = el('svg', {width: W, height: H + 34, class: 'histogram'}, box);
    const max = Math.max(...h.buckets.map(b => b[2]));
    h.buckets.forEach(([lo, hi, n], i) => {
      const bh = n / max * H, x = 10 + i * bw;
      const r = el('rect', {x: x, y: H - bh + 4, width: bw - 2, height: Math.max(n ? 1 : 0, bh), fill: '#1f77b4'}, svg);
      el('title', {}, r).textContent = n + ' between ' + dur(lo) + ' and ' + (hi === null ? 'more' : dur(hi));
      if (i % Math.ceil(h.buckets.length / 8) === 0) el('text', {x: x, y: H + 18, fill: '#666'}, svg).textContent = dur(lo);
    });
    host.appendChild(box);
  }
}

summary(); controls(); draw(); latency();

// Opened as index.html#measure, the page times its own redraws through a
// fixed sequence of zooms and pans and prints them at the bottom: how the
// browser check measures that a large report stays responsive.
if (location.hash === '#measure') {
  const times = [];
  const timed = (label, f) => { const a = performance.now(); f(); times.push([label, +(performance.now() - a).toFixed(1)]); };
  timed('whole run', () => setView(0, D.end_ns));
  for (let i = 0; i < 10; i++) timed('zoom in', () => zoom(0.5, D.end_ns / 2));
  timed('later', () => pan(0.5));
  timed('earlier', () => pan(-0.5));
  for (let i = 0; i < 10; i++) timed('zoom out', () => zoom(2, D.end_ns / 2));
  const p = document.createElement('pre'); p.id = 'measure';
  p.textContent = 'redraw ms: ' + JSON.stringify(times) + '\nslowest: ' + Math.max(...times.map(t => t[1]));
  document.body.appendChild(p);
}
"##;

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(raw: &[&str]) -> Vec<String> {
        raw.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sends_pair_with_their_delivery_or_drop_in_order() {
        let trace = lines(&[
            r#"{"seq":0,"t":10,"node":"n1","kind":"net.send","from":"n1","to":"n2","msg":"Append","term":1}"#,
            r#"{"seq":1,"t":11,"node":"n1","kind":"net.send","from":"n1","to":"n2","msg":"Append","term":1}"#,
            r#"{"seq":2,"t":15,"node":"n2","kind":"net.deliver","from":"n1","to":"n2","msg":"Append","term":1}"#,
            r#"{"seq":3,"t":16,"node":"n2","kind":"net.drop","from":"n1","to":"n2","msg":"Append","term":1,"reason":"loss"}"#,
            r#"{"seq":4,"t":20,"node":"n3","kind":"net.send","from":"n3","to":"s1","msg":"MemGet","term":0}"#,
            r#"{"seq":5,"t":30,"node":"n2","kind":"raft.role","term":2,"role":"candidate"}"#,
            r#"{"seq":6,"t":40,"node":"n2","kind":"fault.crash"}"#,
        ]);
        let info = PageInfo {
            title: "t",
            seed: Some(1),
            report: None,
        };
        let d = page_data(&info, &trace);
        assert_eq!(d["lanes"], json!(["n1", "n2", "n3", "s1"]));
        assert_eq!(
            d["msgs"],
            json!([
                [10, 15, 0, 1, 0, 0],
                [11, 16, 0, 1, 0, 1],
                [20, -1, 2, 3, 1, 0]
            ])
        );
        assert_eq!(d["types"], json!([["Append", "raft"], ["MemGet", "cache"]]));
        assert_eq!(
            d["roles"],
            json!([[1, 30, "candidate", 2], [1, 40, "down", 0]])
        );
        assert_eq!(d["end_ns"], json!(40));
        assert_eq!(d["events"], json!(7));
    }

    #[test]
    fn the_page_is_self_contained_and_cannot_be_closed_by_its_data() {
        let trace = lines(&[
            r#"{"seq":0,"t":1,"node":"n1","kind":"fault.network","loss":0.1}"#,
            r#"{"seq":1,"t":2,"node":"n1","kind":"net.send","from":"n1","to":"n2","msg":"<!--<script>","term":0}"#,
        ]);
        let page = render_page(
            &PageInfo {
                title: "a </script> <b>",
                seed: None,
                report: None,
            },
            &trace,
        );
        assert!(page.contains("<title>a &lt;/script&gt; &lt;b&gt;</title>"));
        assert_eq!(page.matches("</script>").count(), 2, "only the page's own");
        assert_eq!(page.matches("<script").count(), 2, "only the page's own");
        assert!(!page.contains("<!--"), "no comment can swallow the script");
        assert!(!page.contains("http://") || page.contains("http://www.w3.org/2000/svg"));
        assert!(
            !page.contains("https://"),
            "nothing fetched from the network"
        );
    }

    #[test]
    fn message_names_map_to_their_protocol() {
        for (m, p) in [
            ("AppendResp", "raft"),
            ("Put", "client"),
            ("LockAcquire", "lock"),
            ("Produce", "queue"),
            ("Fwd-GetS", "cache"),
            ("Snoop", "cache"),
        ] {
            assert_eq!(protocol(m), p, "{m}");
        }
    }
}
