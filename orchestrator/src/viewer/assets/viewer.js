// The run viewer's one script: draws the live parts of the page the server
// rendered (body[data-page]). No framework and no build step; text is
// always set as text, never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);

// An element with attributes and children (strings become text nodes).
function el(tag, attrs, ...children) {
  const svg = ["svg", "g", "rect", "text", "path", "defs", "marker", "title"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// An API call; a refusal becomes an Error carrying the API's problem.
async function api(path, body) {
  const init = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) {
    location.assign("/login");
    throw new Error("sign in first");
  }
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(data.message || resp.statusText);
    err.problem = data;
    throw err;
  }
  return data;
}

function problemText(err) {
  const p = err.problem || {};
  const field = p.metadata && p.metadata.field ? ` (${p.metadata.field})` : "";
  return `${p.reason ? p.reason + ": " : ""}${err.message}${field}`;
}

function showError(node, err) {
  node.textContent = err ? problemText(err) : "";
  node.hidden = !err;
}

const when = (t) => (t ? new Date(t).toLocaleString() : "");
const clock = (t) => (t ? new Date(t).toLocaleTimeString() : "");

// ---- the runs list ------------------------------------------------------

function runsPage() {
  const params = new URLSearchParams(location.search);
  const stateFilter = $("#state-filter");
  const waitingFilter = $("#waiting-filter");
  stateFilter.value = params.get("state") || "";
  waitingFilter.checked = params.get("waiting") === "mine";

  $("#start").addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = $("#start-button");
    button.disabled = true;
    try {
      const started = await api("/api/runs", { goal: $("#goal").value });
      location.assign(`/runs/${encodeURIComponent(started.run_id)}`);
    } catch (err) {
      showError($("#start-error"), err);
      button.disabled = false;
    }
  });

  const refilter = () => {
    const q = new URLSearchParams();
    if (stateFilter.value) q.set("state", stateFilter.value);
    if (waitingFilter.checked) q.set("waiting", "mine");
    history.replaceState(null, "", q.toString() ? `/?${q}` : "/");
    refresh();
  };
  stateFilter.addEventListener("change", refilter);
  waitingFilter.addEventListener("change", refilter);

  async function refresh() {
    // "Waiting for me": runs waiting on a person that the caller may
    // answer; the server applies the access policy.
    const filter = waitingFilter.checked ? "&waiting=mine"
      : stateFilter.value ? `&states=${stateFilter.value}` : "";
    try {
      const { runs } = await api(`/api/runs?limit=200${filter}`);
      const rows = runs.map((r) =>
        el("tr", { "data-run": r.run_id, "data-state": r.state },
          el("td", {}, el("a", { href: `/runs/${encodeURIComponent(r.run_id)}` }, r.run_id)),
          el("td", {}, r.goal),
          el("td", {}, el("span", { class: `badge ${r.state}` }, r.state)),
          el("td", {}, when(r.created)),
          el("td", {}, r.waiting.map((w) => `${w.step}: ${w.question}`).join("; "))));
      $("#runs tbody").replaceChildren(...rows);
      $("#runs-note").textContent = runs.length ? "" : "No runs match.";
    } catch (err) {
      $("#runs-note").textContent = problemText(err);
    }
  }
  refresh();
  // The list is read again every 1.5 s; a run's own page is live.
  setInterval(refresh, 1500);
}

// ---- a run ----------------------------------------------------------------

const TERMINAL = ["done", "failed", "skipped"];

function runPage() {
  const runId = document.body.dataset.run;
  const run = {
    lastSeq: 0, gaps: 0, duplicates: 0, steps: new Map(), order: [], waits: new Map(),
    finished: null, provenance: new Map(),
  };
  window.agentmeshRun = run; // for people poking at the page, and for tests
  $("#run-id").textContent = runId;
  $("#cancel").addEventListener("click", async () => {
    $("#cancel").disabled = true;
    try {
      await api(`/api/runs/${encodeURIComponent(runId)}/cancel`, { reason: "canceled from the run viewer" });
      showError($("#run-error"), null);
    } catch (err) {
      showError($("#run-error"), err);
      $("#cancel").disabled = false;
    }
  });

  function stepOf(id) {
    if (!run.steps.has(id)) {
      run.steps.set(id, { id, state: "pending", after: [], text: "", fraction: null, attempt: 0 });
      run.order.push(id);
    }
    return run.steps.get(id);
  }

  function runState() {
    if (run.finished) return run.finished.state;
    if (run.waits.size) return "WAITING";
    return run.order.length ? "RUNNING" : "PENDING";
  }

  function apply(ev) {
    const s = ev.step ? stepOf(ev.step) : null;
    switch (ev.kind) {
      case "planned":
        $("#run-goal").textContent = ev.plan.goal || "Run";
        for (const p of ev.plan.steps) {
          const st = stepOf(p.id);
          Object.assign(st, { skill: p.skill, agent: p.agent, endpoint: p.endpoint, after: p.after, gate: !p.skill });
        }
        break;
      case "step_queued": Object.assign(s, { state: "queued", text: `waiting for a free ${ev.skill} (${ev.waiting} queued)` }); break;
      case "step_started":
        Object.assign(s, { state: "running", attempt: ev.attempt, agent: ev.agent, endpoint: ev.endpoint, text: `attempt ${ev.attempt} on ${ev.endpoint}`, fraction: null });
        break;
      case "step_event":
        if (ev.task === "progress") {
          if (ev.message) s.text = ev.message;
          if (ev.fraction > 0) s.fraction = ev.fraction;
        } else if (ev.task === "status" && ev.message) {
          s.text = ev.message;
        }
        break;
      case "step_retrying": Object.assign(s, { state: "retrying", text: `attempt ${ev.attempt} failed (${ev.reason}): ${ev.message}` }); break;
      case "step_rerouted": Object.assign(s, { state: "rerouted", text: `rerouted from ${ev.from} to ${ev.to}: ${ev.reason}` }); break;
      case "step_waiting":
        Object.assign(s, { state: "waiting", text: ev.question });
        run.waits.set(ev.step, ev);
        break;
      case "step_answered":
        run.waits.delete(ev.step);
        Object.assign(s, { state: "running", text: `answered${ev.by ? " by " + ev.by : ""}` });
        break;
      case "step_completed":
        run.waits.delete(ev.step);
        Object.assign(s, { state: "done", text: ev.provenance ? `done by ${ev.provenance.agent}` : "done", fraction: null });
        if (ev.provenance) run.provenance.set(ev.step, ev.provenance);
        break;
      case "step_failed":
        run.waits.delete(ev.step);
        Object.assign(s, { state: "failed", text: `${ev.reason}: ${ev.message}` });
        break;
      case "finished":
        run.finished = ev;
        run.waits.clear();
        for (const st of run.steps.values()) if (!TERMINAL.includes(st.state)) st.state = "skipped";
        if (ev.report) for (const p of ev.report.provenance) run.provenance.set(p.step_id, p);
        break;
      default: break;
    }
  }

  function logLine(ev) {
    const what = {
      planned: () => `planned ${ev.plan.steps.length} steps`,
      step_started: () => `attempt ${ev.attempt} to ${ev.agent} at ${ev.endpoint}`,
      step_event: () => (ev.task === "progress" ? `${ev.message}${ev.fraction ? ` (${Math.round(ev.fraction * 100)}%)` : ""}` : `${ev.task} ${ev.state || ""} ${ev.message || ""}`),
      step_retrying: () => `attempt ${ev.attempt} failed: ${ev.reason} ${ev.message}; again in ${ev.delay_s.toFixed(2)} s`,
      step_rerouted: () => `rerouted ${ev.from} → ${ev.to}: ${ev.reason}`,
      step_queued: () => `queued for ${ev.skill} (${ev.waiting} waiting)`,
      step_completed: () => (ev.provenance ? `completed by ${ev.provenance.agent} ${ev.provenance.agent_version} at ${ev.provenance.endpoint}` : "completed"),
      step_failed: () => `failed after ${ev.attempts} attempts: ${ev.reason} ${ev.message}`,
      report_chunk: () => `report ${ev.artifact}${ev.filename ? ` (${ev.filename})` : ""}, ${ev.bytes} bytes`,
      finished: () => `run ${ev.state}${ev.reason ? ` (${ev.reason})` : ""}: ${ev.message}`,
      resumed: () => `resumed by ${ev.orchestrator}`,
      step_waiting: () => `waits for a person: ${ev.question}`,
      step_answered: () => `answered${ev.by ? ` by ${ev.by}` : ""}: ${JSON.stringify(ev.answer)}`,
    }[ev.kind];
    return el("li", { value: ev.seq, "data-seq": ev.seq, "data-kind": ev.kind },
      el("span", { class: "time" }, clock(ev.time)),
      el("span", { class: "kind" }, ev.kind), " ",
      ev.step ? `[${ev.step}] ` : "", what ? what() : "");
  }

  // ---- drawing
  function drawGraph() {
    const depth = new Map();
    const depthOf = (id, seen = new Set()) => {
      if (depth.has(id)) return depth.get(id);
      if (seen.has(id)) return 0;
      seen.add(id);
      const st = run.steps.get(id);
      const d = st && st.after.length ? 1 + Math.max(...st.after.map((a) => depthOf(a, seen))) : 0;
      depth.set(id, d);
      return d;
    };
    const columns = [];
    for (const id of run.order) {
      const d = depthOf(id);
      (columns[d] = columns[d] || []).push(id);
    }
    const W = 210, H = 74, GX = 60, GY = 24;
    const pos = new Map();
    columns.forEach((col, c) => col.forEach((id, r) => pos.set(id, { x: 10 + c * (W + GX), y: 10 + r * (H + GY) })));
    const width = 20 + columns.length * (W + GX) - GX;
    const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (H + GY) - GY;
    const svg = el("svg", { viewBox: `0 0 ${Math.max(width, 300)} ${height}`, height, role: "img", "aria-label": "the run's plan" },
      el("defs", {}, el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
        el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#a0aec0" }))));
    for (const id of run.order) {
      const to = pos.get(id);
      for (const from of run.steps.get(id).after) {
        const f = pos.get(from);
        if (!f) continue;
        const x1 = f.x + W, y1 = f.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
        svg.append(el("path", { class: "edge", d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}` }));
      }
    }
    for (const id of run.order) {
      const st = run.steps.get(id);
      const p = pos.get(id);
      const label = st.gate ? "approval gate" : `${st.skill || ""}${st.agent ? " · " + st.agent : ""}`;
      const g = el("g", { class: "step", "data-step": id, "data-state": st.state, transform: `translate(${p.x},${p.y})` },
        el("title", {}, `${id}: ${st.state}${st.text ? " — " + st.text : ""}`),
        el("rect", { class: "box", width: W, height: H, rx: 6 }),
        el("text", { class: "title", x: 10, y: 18 }, id),
        el("text", { x: 10, y: 34 }, label.slice(0, 32)),
        el("text", { class: "state", x: 10, y: 50 }, `${st.state}${st.attempt > 1 ? ` (attempt ${st.attempt})` : ""}`),
        el("text", { class: "state", x: 10, y: 65 }, (st.text || "").slice(0, 30)));
      if (st.state === "running" && st.fraction) {
        g.append(el("rect", { class: "track", x: 120, y: 44, width: 80, height: 6, rx: 3 }),
          el("rect", { class: "bar", x: 120, y: 44, width: Math.round(80 * Math.min(1, st.fraction)), height: 6, rx: 3 }));
      }
      svg.append(g);
    }
    $("#graph").replaceChildren(svg);
  }

  function drawProvenance() {
    const rows = [...run.provenance.values()].map((p) =>
      el("tr", { "data-step": p.step_id },
        el("td", {}, p.step_id), el("td", {}, p.agent), el("td", {}, p.agent_version),
        el("td", {}, p.endpoint), el("td", {}, p.attempts), el("td", {}, `${(p.duration_s || 0).toFixed(2)} s`),
        el("td", {}, (p.earlier_endpoints || []).join(", "))));
    $("#provenance tbody").replaceChildren(...rows);
  }

  const drawnWaits = new Map();
  function drawWaits() {
    for (const [step, node] of drawnWaits) {
      if (!run.waits.has(step)) { node.remove(); drawnWaits.delete(step); }
    }
    for (const [step, w] of run.waits) {
      if (!drawnWaits.has(step)) {
        const node = waitPanel(runId, w);
        $("#waits").append(node);
        drawnWaits.set(step, node);
      }
    }
    $("#waiting").hidden = run.waits.size === 0;
  }

  let reportShown = false;
  function drawRun() {
    const state = runState();
    const badge = $("#run-state");
    badge.textContent = state;
    badge.className = `badge ${state}`;
    document.body.dataset.state = state;
    $("#cancel").disabled = !!run.finished;
    if (run.finished) {
      $("#run-message").textContent = run.finished.message || "";
      if (!reportShown && ["COMPLETED", "PARTIAL"].includes(run.finished.state)) {
        reportShown = true;
        const src = `/api/runs/${encodeURIComponent(runId)}/report`;
        $("#report-link").href = src;
        $("#report-link").hidden = false;
        $("#report").src = src;
        $("#report-section").hidden = false;
      }
    }
    drawGraph();
    drawProvenance();
    drawWaits();
  }

  // ---- the live feed: the run's log from after the last event seen.
  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawRun(); });
  };
  function connect() {
    const source = new EventSource(`/api/runs/${encodeURIComponent(runId)}/events?after=${run.lastSeq}`);
    let moved = false;
    source.addEventListener("run", (msg) => {
      const ev = JSON.parse(msg.data);
      if (ev.seq <= run.lastSeq) { run.duplicates += 1; return; }
      if (ev.seq !== run.lastSeq + 1) run.gaps += 1;
      run.lastSeq = ev.seq;
      apply(ev);
      // Every event is in the log (heartbeats hidden), so the log shows
      // at a glance that nothing is missing.
      const line = logLine(ev);
      if (ev.kind === "step_event" && ev.task === "heartbeat") line.hidden = true;
      $("#log").append(line);
      redraw();
    });
    source.addEventListener("problem", (msg) => {
      const p = JSON.parse(msg.data);
      moved = p.reason === "RUN_MOVED";
      if (!moved) showError($("#run-error"), Object.assign(new Error(p.message), { problem: p }));
    });
    source.addEventListener("end", () => {
      source.close();
      if (moved) setTimeout(connect, 1000);
    });
    source.addEventListener("error", () => {
      // The browser reconnects by itself, sending Last-Event-ID: the
      // server resumes after the last event this page has.
      document.body.dataset.reconnecting = "1";
    });
    source.addEventListener("open", () => { delete document.body.dataset.reconnecting; });
  }
  api(`/api/runs/${encodeURIComponent(runId)}`).then(() => connect(), (err) => showError($("#run-error"), err));
}

// ---- waiting for a person --------------------------------------------------

function waitPanel(runId, w) {
  const error = el("p", { class: "error", hidden: true });
  const send = async (answer, buttons) => {
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await api(`/api/runs/${encodeURIComponent(runId)}/steps/${encodeURIComponent(w.step)}/answer`, { answer });
      showError(error, null);
    } catch (err) {
      showError(error, err);
      buttons.forEach((b) => { b.disabled = false; });
    }
  };
  const head = [
    el("h3", {}, w.wait === "APPROVAL" ? `Approve step ${w.step}?` : `Step ${w.step} asks`),
    el("p", { class: "question" }, w.question),
    el("p", { class: "note" }, `${w.agent ? `asked by ${w.agent}; ` : ""}waiting since ${when(w.since)}${w.deadline ? `, until ${when(w.deadline)}` : ""}`),
  ];
  if (w.wait === "APPROVAL") {
    const reason = el("input", { type: "text", name: "reason", placeholder: "reason (kept in the run's record)" });
    const approve = el("button", { type: "button", class: "primary", "data-action": "approve" }, "Approve");
    const reject = el("button", { type: "button", class: "danger", "data-action": "reject" }, "Reject");
    approve.addEventListener("click", () => send({ approved: true, reason: reason.value }, [approve, reject]));
    reject.addEventListener("click", () => send({ approved: false, reason: reason.value }, [approve, reject]));
    return el("div", { class: "wait", "data-step": w.step, "data-kind": w.wait }, head,
      el("details", { open: true }, el("summary", {}, "What is to be approved"), el("pre", {}, JSON.stringify(w.subject, null, 2))),
      el("form", { onsubmit: (e) => e.preventDefault() }, reason, el("div", { class: "actions" }, approve, reject)), error);
  }
  const form = schemaForm(w.answer_schema || {});
  const submit = el("button", { type: "submit", class: "primary" }, "Answer");
  const formNode = el("form", { "data-input": w.input_id }, form.node, submit, error);
  formNode.addEventListener("submit", (e) => {
    e.preventDefault();
    let value;
    try { value = form.value(); } catch (err) { showError(error, err); return; }
    send(value, [submit]);
  });
  return el("div", { class: "wait", "data-step": w.step, "data-kind": w.wait }, head, formNode);
}

// A form for a JSON Schema: an object's properties become fields (enums a
// choice, strings text, numbers numbers, booleans a box, arrays of enums
// boxes, nested objects a fieldset); anything else is JSON text.
function schemaForm(schema, path = "answer") {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  const label = (name) => el("label", { for: path }, schema.title || name, schema.description ? el("span", { class: "note" }, ` — ${schema.description}`) : "");
  const name = path.split(".").pop();
  if (schema.enum || schema.const !== undefined) {
    const choices = schema.enum || [schema.const];
    const select = el("select", { id: path, name: path }, choices.map((c) => el("option", { value: JSON.stringify(c) }, String(c))));
    return { node: el("div", {}, label(name), " ", select), value: () => JSON.parse(select.value) };
  }
  if (type === "object" || (!type && schema.properties)) {
    const props = schema.properties || {};
    const required = new Set(schema.required || []);
    if (!Object.keys(props).length) return jsonField(path, label(name), "{}");
    const fields = Object.entries(props).map(([k, sub]) => ({ k, f: schemaForm(sub, `${path}.${k}`), required: required.has(k) }));
    const node = el(path === "answer" ? "div" : "fieldset", {}, path === "answer" ? null : el("legend", {}, schema.title || name), fields.map((x) => x.f.node));
    return {
      node,
      value: () => {
        const out = {};
        for (const x of fields) {
          const v = x.f.value();
          if (v !== undefined) out[x.k] = v;
        }
        return out;
      },
    };
  }
  if (type === "boolean") {
    const box = el("input", { type: "checkbox", id: path, name: path });
    return { node: el("div", {}, box, " ", label(name)), value: () => box.checked };
  }
  if (type === "integer" || type === "number") {
    const input = el("input", { type: "number", id: path, name: path, step: type === "integer" ? 1 : "any" });
    return { node: el("div", {}, label(name), " ", input), value: () => (input.value === "" ? undefined : Number(input.value)) };
  }
  if (type === "string") {
    const input = schema.maxLength && schema.maxLength <= 200
      ? el("input", { type: "text", id: path, name: path, maxlength: schema.maxLength })
      : el("textarea", { id: path, name: path, rows: 2 });
    return { node: el("div", {}, label(name), input), value: () => (input.value === "" ? undefined : input.value) };
  }
  if (type === "array" && schema.items && schema.items.enum) {
    const boxes = schema.items.enum.map((c) => el("input", { type: "checkbox", value: JSON.stringify(c), name: path }));
    return {
      node: el("div", {}, label(name), boxes.map((b, i) => el("label", {}, b, ` ${schema.items.enum[i]} `))),
      value: () => boxes.filter((b) => b.checked).map((b) => JSON.parse(b.value)),
    };
  }
  return jsonField(path, label(name), "");
}

function jsonField(path, label, initial) {
  const area = el("textarea", { id: path, name: path, rows: 4, placeholder: "JSON" });
  area.value = initial;
  return {
    node: el("div", {}, label, area),
    value: () => {
      if (area.value.trim() === "") return undefined;
      try { return JSON.parse(area.value); } catch (e) { throw new Error(`${path} is not JSON: ${e.message}`); }
    },
  };
}

// ---- agents ---------------------------------------------------------------

function agentsPage() {
  async function refresh() {
    try {
      const { endpoints, queues } = await api("/api/agents");
      $("#agents tbody").replaceChildren(...endpoints.map((e) =>
        el("tr", { "data-endpoint": e.address, "data-health": e.health },
          el("td", {}, e.agent || ""), el("td", {}, e.version || ""), el("td", {}, e.address), el("td", {}, e.source),
          el("td", {}, el("span", { class: `badge ${e.health === "SERVING" ? "COMPLETED" : "FAILED"}` }, e.health), e.ejected ? " ejected" : ""),
          el("td", {}, e.skills.join(", ")),
          el("td", {}, `${e.in_flight}${e.max_concurrency ? ` / ${e.max_concurrency}` : ""}`),
          el("td", {}, `${Math.round((e.error_rate || 0) * 100)}%`))));
      $("#queues tbody").replaceChildren(...(queues.length ? queues : [{ skill: "(no queues)", waiting: 0 }]).map((q) =>
        el("tr", {}, el("td", {}, q.skill), el("td", {}, q.waiting))));
    } catch (err) {
      $("#agents tbody").replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "error" }, problemText(err))));
    }
  }
  refresh();
  setInterval(refresh, 2000);
}

({ runs: runsPage, run: runPage, agents: agentsPage }[document.body.dataset.page] || (() => {}))();
