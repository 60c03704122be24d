// toolgate console: a small single-page app over the public JSON API (/v1). No framework, no
// build step. Every text from the API is put in the page as text (never as HTML), so a hostile
// upstream answer or definition cannot script the console.
"use strict";

const TOKEN_KEY = "toolgate-token";
const main = document.getElementById("main");

// ---------- DOM helpers ----------

/** Build an element: h("button", {class: "x", onclick: f}, "text", child). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
/** A labelled control: returns {wrap, input}. */
function control(labelText, input, opts = {}) {
  const id = input.id || `f${++uid}`;
  input.id = id;
  const wrap = h("div", { class: "field" }, h("label", { for: id }, labelText), input);
  if (opts.hint) wrap.append(h("p", { class: "hint" }, opts.hint));
  if (opts.field) {
    input.dataset.field = opts.field;
    wrap.append(h("p", { class: "error", "data-error-for": opts.field, hidden: true }));
  }
  return { wrap, input };
}

function select(options, value) {
  const s = h("select", {});
  for (const [v, label] of options) s.append(h("option", { value: v, selected: v === value }, label));
  return s;
}

function toast(text) {
  const t = h("p", {}, text);
  document.getElementById("toast").append(t);
  setTimeout(() => t.remove(), 4000);
}

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? t : d.toLocaleString();
}

function json(v) {
  return JSON.stringify(v, null, 2);
}

// ---------- API ----------

class ApiError extends Error {
  constructor(status, err) {
    super((err && err.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (err && err.code) || "";
    this.details = (err && err.details) || [];
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(`/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { code: "network", message: "The gateway cannot be reached." });
  }
  const text = await r.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: { code: "bad_response", message: text.slice(0, 200) } }; }
  }
  if (r.status === 401) {
    signIn(data && data.error && data.error.message);
    throw new ApiError(401, data && data.error);
  }
  if (!r.ok) throw new ApiError(r.status, data && data.error);
  return data;
}

/** Clear the messages a previous submit of `form` showed. */
function clearFieldErrors(form, box) {
  for (const e of form.querySelectorAll("[data-error-for]")) { e.hidden = true; e.textContent = ""; }
  box.replaceChildren();
}

/** Put a 422's details next to the fields they name; the rest, and the message, go in `box`. */
function showFieldErrors(form, box, e) {
  const unplaced = [];
  for (const d of e.details || []) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(d.field)}"]`);
    if (slot) { slot.textContent = d.message; slot.hidden = false; } else unplaced.push(`${d.field}: ${d.message}`);
  }
  box.replaceChildren(h("p", { class: "error", role: "alert" }, e.message), ...unplaced.map((u) => h("p", { class: "error" }, u)));
  const first = form.querySelector("[data-error-for]:not([hidden])");
  if (first) first.parentElement.querySelector("input,select,textarea")?.focus();
}

/** Show an API error as a friendly message in `where`. */
function showError(where, e) {
  const msg = e instanceof ApiError ? e.message : "Something went wrong.";
  where.replaceChildren(h("p", { class: "error", role: "alert" }, msg));
}

// ---------- sign-in ----------

function signIn(reason) {
  document.getElementById("sign-out").hidden = true;
  const token = h("input", { type: "password", autocomplete: "current-password", required: true });
  const c = control("Admin token", token);
  const form = h("form", { class: "card", onsubmit: (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, token.value.trim());
    route();
  } },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "This gateway has an admin token. Enter it (or an API key) once; it is kept for this tab only."),
    reason ? h("p", { class: "error" }, reason) : null,
    c.wrap,
    h("button", { type: "submit" }, "Sign in"));
  main.replaceChildren(form);
  token.focus();
}

document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "#/webhooks";
  route();
});

// ---------- routing ----------

const routes = [
  [/^#\/webhooks$/, () => webhooksPage()],
  [/^#\/webhooks\/new$/, () => webhookForm(null)],
  [/^#\/webhooks\/([^/]+)\/edit$/, (m) => webhookForm(m[1])],
  [/^#\/webhooks\/([^/]+)\/test$/, (m) => testPage(m[1])],
  [/^#\/secrets$/, () => secretsPage()],
  [/^#\/tools$/, () => toolsPage()],
  [/^#\/history$/, () => historyPage()],
  [/^#\/agents$/, () => agentsPage()],
  [/^#\/agents\/new$/, () => agentForm(null)],
  [/^#\/agents\/([^/]+)\/edit$/, (m) => agentForm(m[1])],
  [/^#\/agents\/([^/]+)\/chat$/, (m) => chatPage(m[1])],
  [/^#\/subscriptions$/, () => subscriptionsPage()],
];

async function route() {
  const hash = location.hash || "#/webhooks";
  document.getElementById("sign-out").hidden = !sessionStorage.getItem(TOKEN_KEY);
  for (const a of document.querySelectorAll("nav a")) {
    if (hash.startsWith(`#/${a.dataset.nav}`)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  for (const [re, page] of routes) {
    const m = hash.match(re);
    if (m) {
      try { await page(m); } catch (e) { if (!(e instanceof ApiError && e.status === 401)) showError(main, e); }
      return;
    }
  }
  location.hash = "#/webhooks";
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);

// ---------- webhooks list ----------

const PAGE = 50;

async function webhooksPage() {
  const search = h("input", { type: "search", placeholder: "Name, URL or description" });
  const searchCtl = control("Search webhooks", search);
  const list = h("div", {});
  const header = h("div", { class: "bar" },
    h("h1", {}, "Webhooks"),
    h("button", { type: "button", "aria-label": "Create webhook", title: "Create webhook", onclick: () => { location.hash = "#/webhooks/new"; } }, "+"));
  main.replaceChildren(header, searchCtl.wrap, list);
  let shown = PAGE;
  let timer = null;
  let items = [];
  const render = () => {
    const q = search.value.trim();
    if (!items.length) {
      list.replaceChildren(q
        ? h("p", { class: "card muted" }, `No webhook matches "${q}".`)
        : h("div", { class: "card empty" },
          h("h2", {}, "No webhooks created yet"),
          h("p", { class: "muted" }, "A webhook is one HTTP call your agents can make: its URL, method and the values it sends."),
          h("button", { type: "button", onclick: () => { location.hash = "#/webhooks/new"; } }, "Create Webhook")));
      return;
    }
    const rows = items.slice(0, shown).map((w) => h("tr", {},
      h("td", {}, w.name), h("td", { class: "url" }, w.url), h("td", {}, w.method), h("td", {}, fmtTime(w.created_at)),
      h("td", {}, actionMenu(w))));
    const table = h("table", {},
      h("thead", {}, h("tr", {}, ["Name", "URL", "Method", "Created at", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows));
    const more = items.length > shown
      ? h("button", { type: "button", class: "secondary", onclick: () => { shown += PAGE; render(); } }, `Load more (${items.length - shown} left)`)
      : null;
    list.replaceChildren(table, h("p", { class: "muted" }, `${items.length} webhook(s)`), more);
  };
  const load = async () => {
    const q = search.value.trim();
    try {
      const data = await api("GET", `/webhooks${q ? `?q=${encodeURIComponent(q)}` : ""}`);
      items = data.items.slice().reverse();
      shown = PAGE;
      render();
    } catch (e) { if (e.status !== 401) showError(list, e); }
  };
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(load, 150); });
  await load();
}

function actionMenu(w) {
  const menu = h("div", { role: "menu", hidden: true });
  const toggle = h("button", { type: "button", class: "secondary", "aria-haspopup": "menu", "aria-expanded": "false", "aria-label": `Actions for ${w.name}` }, "⋯");
  const close = () => { menu.hidden = true; toggle.setAttribute("aria-expanded", "false"); };
  toggle.addEventListener("click", () => {
    const open = menu.hidden;
    menu.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) menu.querySelector("button").focus();
  });
  menu.addEventListener("keydown", (e) => { if (e.key === "Escape") { close(); toggle.focus(); } });
  menu.append(
    h("button", { type: "button", role: "menuitem", onclick: () => { location.hash = `#/webhooks/${w.id}/edit`; } }, "Edit"),
    h("button", { type: "button", role: "menuitem", onclick: () => { location.hash = `#/webhooks/${w.id}/test`; } }, "Test"),
    h("button", { type: "button", role: "menuitem", onclick: () => { close(); deleteWebhook(w); } }, "Delete"));
  return h("div", { class: "menu" }, toggle, menu);
}

// ---------- delete guard ----------

async function deleteWebhook(w) {
  try {
    await api("DELETE", `/webhooks/${w.id}`);
    toast(`Deleted ${w.name}`);
    route();
  } catch (e) {
    if (e.code !== "in_use") { toast(e.message); return; }
    guardDialog(w, e.details);
  }
}

function guardDialog(w, tools) {
  const list = h("ul", {});
  const del = h("button", { type: "button", class: "danger", disabled: true }, "Delete");
  const remaining = new Set(tools.map((t) => t.tool_id));
  for (const t of tools) {
    const li = h("li", {}, h("span", {}, t.tool_name || t.tool_id), " ");
    const unlink = h("button", { type: "button", class: "secondary", onclick: async () => {
      try {
        await api("POST", `/tools/${t.tool_id}/unlink`);
        remaining.delete(t.tool_id);
        li.remove();
        del.disabled = remaining.size > 0;
      } catch (e) { toast(e.message); }
    } }, "Unlink Tool");
    li.append(unlink);
    list.append(li);
  }
  const dlg = h("dialog", { "aria-labelledby": "guard-title" },
    h("h2", { id: "guard-title" }, `Delete ${w.name}?`),
    h("p", {}, "This webhook is currently in use. To prevent breaking active tools, you must unlink it from the connected tools listed below before deleting."),
    list,
    h("div", { class: "bar" },
      h("button", { type: "button", class: "secondary", onclick: () => dlg.close() }, "Cancel"),
      del));
  del.addEventListener("click", async () => {
    try {
      await api("DELETE", `/webhooks/${w.id}`);
      dlg.close();
      toast(`Deleted ${w.name}`);
      route();
    } catch (e) { toast(e.message); }
  });
  dlg.addEventListener("close", () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
}

// ---------- webhook form ----------

const SECTIONS = [
  ["headers", "Headers", "Header"],
  ["query_params", "Query Params", "Query param"],
  ["path_params", "Path Params", "Path param"],
  ["body", "Body", "Body field"],
];
const DATA_TYPES = [["string", "String"], ["number", "Number"], ["integer", "Integer"], ["boolean", "Boolean"]];
const VALUE_TYPES = [["dynamic", "Dynamic"], ["static", "Static"], ["secret", "Secret"], ["context", "Context"]];

async function webhookForm(id) {
  const [existing, secrets] = await Promise.all([
    id ? api("GET", `/webhooks/${id}`) : Promise.resolve(null),
    api("GET", "/secrets"),
  ]);
  const secretNames = secrets.items.map((s) => s.name);
  const spec = existing ? { ...existing } : { method: "GET", timeout_ms: 10000 };
  for (const k of ["id", "created_at", "updated_at"]) delete spec[k];
  const formError = h("div", {});
  const name = control("Name", h("input", { value: spec.name || "", required: true }), { field: "name" });
  const description = control("Description", h("textarea", { rows: 2 }, spec.description || ""),
    { field: "description", hint: "The agent reads this to decide when to call the webhook." });
  const method = control("Method", select(["GET", "POST", "PUT", "PATCH", "DELETE"].map((m) => [m, m]), spec.method || "GET"), { field: "method" });
  const url = control("URL", h("input", { value: spec.url || "", placeholder: "https://api.example.com/orders/{order_number}", required: true }), { field: "url" });
  const secs = Math.min(120, Math.max(1, Math.round((spec.timeout_ms || 10000) / 1000)));
  const timeoutOut = h("output", {}, `${secs} s`);
  const timeout = control("Timeout", h("input", { type: "range", min: 1, max: 120, step: 1, value: secs }), { field: "timeout_ms" });
  timeout.input.addEventListener("input", () => { timeoutOut.textContent = `${timeout.input.value} s`; });
  timeout.wrap.querySelector("label").append(" ", timeoutOut);

  const sections = {};
  const sectionEls = [];
  for (const [key, title, rowName] of SECTIONS) {
    const rows = h("div", {});
    const fs = h("fieldset", {}, h("legend", {}, title), rows);
    const state = { rows: [], container: rows, rowName, key };
    sections[key] = state;
    const add = h("button", { type: "button", class: "secondary", "aria-label": `Add ${rowName.toLowerCase()}` }, "Add");
    add.addEventListener("click", () => { addRow(state, {}, secretNames, true); });
    fs.append(add);
    for (const f of spec[key] || []) addRow(state, f, secretNames);
    sectionEls.push(fs);
  }
  const bodySection = sectionEls[3];
  const syncBody = () => { bodySection.hidden = method.input.value === "GET"; };
  method.input.addEventListener("change", syncBody);
  syncBody();
  // {placeholders} typed in the URL become path params by themselves.
  url.input.addEventListener("input", () => {
    const names = [...url.input.value.matchAll(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]);
    const have = new Set(sections.path_params.rows.map((r) => r.get().name));
    for (const n of names) if (!have.has(n)) addRow(sections.path_params, { name: n, value_type: "dynamic" }, secretNames);
  });

  const submit = h("button", { type: "submit" }, id ? "Save" : "Create");
  const form = h("form", { class: "card", novalidate: true },
    h("div", { class: "bar" }, h("h1", {}, id ? `Edit ${spec.name}` : "Create webhook"),
      h("a", { href: "#/webhooks" }, "Back to webhooks")),
    formError, name.wrap, description.wrap, h("div", { class: "grid" }, method.wrap, timeout.wrap), url.wrap,
    sectionEls, submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form, formError);
    const body = { ...spec, name: name.input.value.trim(), description: description.input.value, method: method.input.value,
      url: url.input.value.trim(), timeout_ms: Number(timeout.input.value) * 1000 };
    for (const [key] of SECTIONS) body[key] = sections[key].rows.map((r) => r.get());
    if (body.method === "GET") body.body = [];
    submit.disabled = true;
    try {
      const saved = id ? await api("PUT", `/webhooks/${id}`, body) : await api("POST", "/webhooks", body);
      toast(id ? `Saved ${saved.name}` : `Created ${saved.name}`);
      location.hash = "#/webhooks";
    } catch (e) {
      if (e.status !== 401) showFieldErrors(form, formError, e);
    } finally { submit.disabled = false; }
  });
  main.replaceChildren(form);
  name.input.focus();
}

/** Add a field row to a section; `f` is an existing field (kept whole, so unknown keys survive). */
function addRow(section, f, secretNames, focus = false) {
  const i = section.rows.length;
  const at = (k) => `${section.key}[${i}].${k}`;
  const name = control("Name", h("input", { value: f.name || "" }), { field: at("name") });
  const dataType = control("Data type", select(DATA_TYPES, f.data_type || "string"), { field: at("data_type") });
  const valueType = control("Value type", select(VALUE_TYPES, f.value_type || "dynamic"), { field: at("value_type") });
  const desc = control("Description", h("input", { value: f.description || "" }), { field: at("description") });
  const required = h("input", { type: "checkbox", checked: f.required !== false });
  const requiredCtl = control("Required", required, { field: at("required") });
  const staticValue = control("Value", h("input", { value: f.value_type === "static" && f.value !== undefined ? String(f.value) : "" }), { field: at("value") });
  const secretPick = control("Secret", select([["", "Choose a secret"], ...secretNames.map((n) => [n, n])], f.secret || ""), { field: at("secret") });
  const contextPath = control("Context path", h("input", { value: f.value_type === "context" ? f.value || "" : "", placeholder: "user.id" }),
    { field: at("value"), hint: "Where the calling application puts the value in its context." });
  const extra = h("div", { class: "grid" });
  const sync = () => {
    const vt = valueType.input.value;
    extra.replaceChildren(...(vt === "dynamic" ? [desc.wrap, requiredCtl.wrap]
      : vt === "static" ? [staticValue.wrap] : vt === "secret" ? [secretPick.wrap] : [contextPath.wrap]));
  };
  valueType.input.addEventListener("change", sync);
  sync();
  const remove = h("button", { type: "button", class: "link" }, "Remove");
  const row = h("fieldset", { class: "row" }, h("legend", {}, `${section.rowName} ${i + 1}`),
    h("div", { class: "grid" }, name.wrap, dataType.wrap, valueType.wrap), extra, remove);
  const entry = {
    el: row,
    get() {
      const out = { ...f, name: name.input.value.trim(), data_type: dataType.input.value, value_type: valueType.input.value };
      for (const k of ["description", "required", "value", "secret"]) delete out[k];
      const vt = out.value_type;
      if (vt === "dynamic") { out.description = desc.input.value; out.required = required.checked; }
      if (vt === "static") {
        const raw = staticValue.input.value;
        const dt = out.data_type;
        out.value = dt === "number" || dt === "integer" ? (raw.trim() === "" ? raw : Number(raw)) : dt === "boolean" ? raw === "true" : raw;
      }
      if (vt === "secret") out.secret = secretPick.input.value;
      if (vt === "context") out.value = contextPath.input.value.trim();
      return out;
    },
  };
  remove.addEventListener("click", () => { section.rows = section.rows.filter((r) => r !== entry); row.remove(); });
  section.rows.push(entry);
  section.container.append(row);
  if (focus) name.input.focus();
}

// ---------- test send ----------

async function testPage(id) {
  const w = await api("GET", `/webhooks/${id}`);
  const inputs = [];
  const fields = h("div", { class: "grid" });
  for (const key of ["headers", "query_params", "path_params", "body"]) {
    for (const f of w[key] || []) {
      if (f.value_type !== "dynamic") continue;
      const arg = f.argument || f.name;
      let input;
      if (f.data_type === "boolean") input = h("input", { type: "checkbox" });
      else if (f.data_type === "number" || f.data_type === "integer") input = h("input", { type: "number", step: f.data_type === "integer" ? 1 : "any" });
      else input = h("input", {});
      inputs.push([arg, f.data_type, input]);
      fields.append(control(arg, input, { hint: f.description || undefined }).wrap);
    }
  }
  const context = control("Context (JSON)", h("textarea", { rows: 3 }, "{}"), { hint: "Values the calling application would send, e.g. {\"user\": {\"id\": \"42\"}}" });
  const out = h("div", { "aria-live": "polite" });
  const collect = () => {
    const args = {};
    for (const [arg, dt, input] of inputs) {
      if (dt === "boolean") args[arg] = input.checked;
      else if (input.value === "") continue;
      else if (dt === "number" || dt === "integer") args[arg] = Number(input.value);
      else args[arg] = input.value;
    }
    let ctx;
    try { ctx = JSON.parse(context.input.value || "{}"); } catch { throw new ApiError(422, { message: "The context is not valid JSON." }); }
    return { arguments: args, context: ctx };
  };
  const send = h("button", { type: "button" }, "Send test");
  send.addEventListener("click", async () => {
    out.replaceChildren(h("p", { class: "muted" }, "Sending…"));
    try {
      const r = await api("POST", `/webhooks/${id}/test`, collect());
      const record = r.call_id ? await api("GET", `/calls/${r.call_id}`).catch(() => null) : null;
      out.replaceChildren(resultView(r, record));
    } catch (e) {
      if (e.status === 401) return;
      const details = (e.details || []).map((d) => h("li", {}, `${d.field}: ${d.message}`));
      out.replaceChildren(h("p", { class: "error", role: "alert" }, e.message), details.length ? h("ul", {}, details) : null);
    }
  });
  const dry = h("button", { type: "button", class: "secondary" }, "Dry run");
  dry.addEventListener("click", async () => {
    try {
      const r = await api("POST", `/webhooks/${id}/test`, { ...collect(), dry_run: true });
      out.replaceChildren(r.ok
        ? h("div", { class: "card" }, h("h3", {}, "The request that would be sent (secrets redacted; nothing sent)"),
          h("pre", { "data-testid": "curl" }, r.curl))
        : h("div", { class: "card" }, h("p", { class: "error", role: "alert" }, r.content || r.outcome)));
    } catch (e) { if (e.status !== 401) showError(out, e); }
  });
  main.replaceChildren(h("div", { class: "card" },
    h("div", { class: "bar" }, h("h1", {}, `Test ${w.name}`), h("a", { href: "#/webhooks" }, "Back to webhooks")),
    h("p", { class: "muted" }, `${w.method} ${w.url}`),
    inputs.length ? fields : h("p", { class: "muted" }, "This webhook takes no arguments."),
    context.wrap, h("div", { class: "bar" }, h("div", {}, send, " ", dry))), out);
}

function resultView(r, record) {
  const cls = r.ok ? "outcome-success" : "outcome-failed";
  return h("div", { class: "card" },
    h("p", {}, "Outcome: ", h("span", { class: cls, "data-testid": "outcome" }, r.outcome),
      " · HTTP status: ", h("span", { "data-testid": "status" }, r.status ?? "none"),
      " · Duration: ", `${r.duration_ms} ms`),
    record && record.request ? [h("h3", {}, "Request (secrets redacted)"), h("pre", {}, json(record.request))] : null,
    h("h3", {}, "Response"), h("pre", {}, r.content || json(r.response)));
}

// ---------- secrets ----------

async function secretsPage() {
  const data = await api("GET", "/secrets");
  const msg = h("div", {});
  const name = control("Name", h("input", { autocomplete: "off" }), { field: "name" });
  const value = control("Value", h("input", { type: "password", autocomplete: "new-password" }), { field: "value" });
  const add = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/secrets", { name: name.input.value.trim(), value: value.input.value });
      toast(`Added ${name.input.value.trim()}`);
      route();
    } catch (e) { if (e.status !== 401) showError(msg, e); }
  } }, h("h2", {}, "Add secret"), h("div", { class: "grid" }, name.wrap, value.wrap), h("button", { type: "submit" }, "Add secret"));
  const rows = data.items.map((s) => {
    const actions = h("td", {});
    const update = h("button", { type: "button", class: "secondary" }, "Update value");
    update.addEventListener("click", () => {
      const v = control(`New value for ${s.name}`, h("input", { type: "password", autocomplete: "new-password" }));
      const f = h("form", { onsubmit: async (ev) => {
        ev.preventDefault();
        try { await api("PUT", `/secrets/${s.id}`, { value: v.input.value }); toast(`Updated ${s.name}`); route(); }
        catch (e) { if (e.status !== 401) showError(msg, e); }
      } }, v.wrap, h("button", { type: "submit" }, "Save value"));
      actions.replaceChildren(f);
      v.input.focus();
    });
    const del = h("button", { type: "button", class: "danger" }, "Delete");
    del.addEventListener("click", async () => {
      try { await api("DELETE", `/secrets/${s.id}`); toast(`Deleted ${s.name}`); route(); }
      catch (e) {
        if (e.status === 401) return;
        const users = (e.details || []).map((d) => h("li", {}, d.webhook_name || d.webhook_id || d.subscription_id));
        msg.replaceChildren(h("p", { class: "error", role: "alert" }, e.message), users.length ? h("ul", {}, users) : null);
      }
    });
    actions.append(update, " ", del);
    return h("tr", {}, h("td", {}, s.name), h("td", {}, fmtTime(s.created_at)), h("td", {}, fmtTime(s.updated_at)), actions);
  });
  const list = data.items.length
    ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Created at", "Updated at", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))
    : h("div", { class: "card empty" }, h("h2", {}, "No webhooks secrets added yet"),
      h("p", { class: "muted" }, "Secrets hold API keys and tokens your webhooks send. Values are write-only: they are never shown again."));
  main.replaceChildren(h("div", { class: "bar" }, h("h1", {}, "API & Webhook Secrets")), msg, list, add);
}

// ---------- tools ----------

async function toolsPage() {
  const [tools, hooks] = await Promise.all([api("GET", "/tools"), api("GET", "/webhooks")]);
  const hookName = new Map(hooks.items.map((w) => [w.id, w.name]));
  const msg = h("div", {});
  const schemaView = h("div", {});
  const rows = tools.items.map((t) => {
    const view = h("button", { type: "button", class: "secondary" }, "View schema");
    view.addEventListener("click", () => showSchema(t, schemaView));
    const unlink = h("button", { type: "button", class: "secondary", disabled: !t.webhook_id }, "Unlink");
    unlink.addEventListener("click", async () => {
      try { await api("POST", `/tools/${t.id}/unlink`); toast(`Unlinked ${t.name}`); route(); }
      catch (e) { if (e.status !== 401) showError(msg, e); }
    });
    return h("tr", {}, h("td", {}, t.name), h("td", {}, t.webhook_id ? hookName.get(t.webhook_id) || t.webhook_id : h("span", { class: "muted" }, "not linked")),
      h("td", {}, t.description || ""), h("td", {}, view, " ", unlink));
  });
  const name = control("Tool name", h("input", {}), { field: "name", hint: "Letters, digits, _ and -: the function name the model sees." });
  const desc = control("Tool description", h("input", {}), { field: "description", hint: "Defaults to the webhook's description." });
  const hook = control("Webhook", select([["", "Choose a webhook"], ...hooks.items.map((w) => [w.id, w.name])], ""), { field: "webhook_id" });
  const create = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { name: name.input.value.trim(), webhook_id: hook.input.value || null };
    if (desc.input.value.trim()) body.description = desc.input.value.trim();
    try { await api("POST", "/tools", body); toast(`Created ${body.name}`); route(); }
    catch (e) { if (e.status !== 401) showError(msg, e); }
  } }, h("h2", {}, "Create tool"), h("div", { class: "grid" }, name.wrap, desc.wrap, hook.wrap), h("button", { type: "submit" }, "Create tool"));
  const list = tools.items.length
    ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Webhook", "Description", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))
    : h("div", { class: "card empty" }, h("h2", {}, "No tools yet"), h("p", { class: "muted" }, "A tool offers a webhook to the model under a function name."));
  main.replaceChildren(h("div", { class: "bar" }, h("h1", {}, "Tools")), msg, list, schemaView, create);
}

async function showSchema(t, where) {
  const strict = h("input", { type: "checkbox" });
  const pre = h("pre", { "data-testid": "schema" });
  const load = async () => {
    try { pre.textContent = json(await api("GET", `/tools/${t.id}/schema${strict.checked ? "?strict=true" : ""}`)); }
    catch (e) { pre.textContent = e.message; }
  };
  strict.addEventListener("change", load);
  where.replaceChildren(h("div", { class: "card" }, h("h2", {}, `Schema of ${t.name}`),
    h("p", { class: "muted" }, "Exactly the JSON the model sees."), control("Strict mode", strict).wrap, pre));
  await load();
}

// ---------- history ----------

async function historyPage() {
  const [tools, hooks] = await Promise.all([api("GET", "/tools"), api("GET", "/webhooks")]);
  let tab = "success";
  let before = null;
  const list = h("div", {});
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  const tool = control("Tool", select([["", "All tools"], ...tools.items.map((t) => [t.name, t.name])], ""));
  const hook = control("Webhook", select([["", "All webhooks"], ...hooks.items.map((w) => [w.id, w.name])], ""));
  const tabs = h("div", { class: "tabs", role: "tablist" });
  const mkTab = (key, label) => {
    const b = h("button", { type: "button", role: "tab", "aria-selected": String(key === tab) }, label);
    b.addEventListener("click", () => {
      tab = key;
      for (const x of tabs.children) x.setAttribute("aria-selected", String(x === b));
      reload();
    });
    return b;
  };
  tabs.append(mkTab("success", "Succeeded"), mkTab("failed", "Failed"));
  const page = async () => {
    const q = new URLSearchParams({ outcome: tab, limit: "20" });
    if (tool.input.value) q.set("tool", tool.input.value);
    if (hook.input.value) q.set("webhook_id", hook.input.value);
    if (before) q.set("before", before);
    const data = await api("GET", `/calls?${q}`);
    for (const c of data.items) list.append(callEntry(c));
    before = data.next_before || null;
    more.hidden = !before;
    if (!list.children.length) list.append(h("p", { class: "card muted" }, tab === "success" ? "No successful calls yet." : "No failed calls."));
  };
  const reload = async () => { before = null; list.replaceChildren(); try { await page(); } catch (e) { if (e.status !== 401) showError(list, e); } };
  more.addEventListener("click", () => page().catch((e) => showError(list, e)));
  tool.input.addEventListener("change", reload);
  hook.input.addEventListener("change", reload);
  main.replaceChildren(h("div", { class: "bar" }, h("h1", {}, "History")), tabs, h("div", { class: "grid" }, tool.wrap, hook.wrap), list, more);
  await reload();
}

function callEntry(c) {
  const replay = h("button", { type: "button", class: "secondary" }, "Replay");
  const result = h("div", {});
  replay.addEventListener("click", async () => {
    try {
      const r = await api("POST", `/webhooks/${c.webhook_id}/test`, { arguments: c.arguments || {}, context: c.context || {} });
      result.replaceChildren(resultView(r, null));
    } catch (e) { if (e.status !== 401) showError(result, e); }
  });
  const cls = c.outcome === "success" ? "outcome-success" : "outcome-failed";
  return h("details", {},
    h("summary", {}, `${fmtTime(c.started_at)} · ${c.tool || "(test)"} · `, h("span", { class: cls }, c.outcome),
      c.response ? ` · HTTP ${c.response.status}` : "", ` · ${c.duration_ms} ms`),
    c.error ? h("p", { class: "error" }, c.error) : null,
    h("h3", {}, "Arguments"), h("pre", {}, json(c.arguments)),
    c.context ? [h("h3", {}, "Context"), h("pre", {}, json(c.context))] : null,
    c.request ? [h("h3", {}, "Request"), h("pre", {}, json(c.request))] : null,
    c.response ? [h("h3", {}, "Response"), h("pre", {}, json(c.response))] : null,
    replay, result);
}

// ---------- agents ----------

async function agentsPage() {
  const data = await api("GET", "/agents");
  const rows = data.items.map((a) => h("tr", {},
    h("td", {}, a.name), h("td", {}, a.model || h("span", { class: "muted" }, "default")),
    h("td", {}, (a.tools || []).join(", ")), h("td", {}, String(a.max_steps)),
    h("td", {},
      h("a", { href: `#/agents/${a.id}/chat`, class: "button" }, "Chat"), " ",
      a.managed_by ? h("span", { class: "muted" }, "from a file") : h("a", { href: `#/agents/${a.id}/edit` }, "Edit"))));
  const list = data.items.length
    ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Model", "Tools", "Max steps", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))
    : h("div", { class: "card empty" }, h("h2", {}, "No agents yet"),
      h("p", { class: "muted" }, "An agent is a model with a prompt and the tools it may call."),
      h("button", { type: "button", onclick: () => { location.hash = "#/agents/new"; } }, "Create agent"));
  main.replaceChildren(h("div", { class: "bar" }, h("h1", {}, "Agents"),
    h("button", { type: "button", "aria-label": "Create agent", onclick: () => { location.hash = "#/agents/new"; } }, "+")), list);
}

async function agentForm(id) {
  const [agent, tools] = await Promise.all([id ? api("GET", `/agents/${id}`) : Promise.resolve(null), api("GET", "/tools")]);
  const spec = agent ? { ...agent } : { max_steps: 8, tools: [] };
  for (const k of ["id", "created_at", "updated_at"]) delete spec[k];
  const err = h("div", {});
  const name = control("Name", h("input", { value: spec.name || "" }), { field: "name" });
  const model = control("Model", h("input", { value: spec.model || "", placeholder: "the gateway's default" }), { field: "model" });
  const promptFile = control("Prompt file", h("input", { value: spec.prompt || "", placeholder: "support.md" }),
    { field: "prompt", hint: "A file in the prompts directory; or write the system prompt below." });
  const system = control("System prompt", h("textarea", { rows: 5 }, spec.system_prompt || ""), { field: "system_prompt" });
  const steps = control("Max steps", h("input", { type: "number", min: 1, max: 50, value: spec.max_steps || 8 }), { field: "max_steps" });
  const picks = h("fieldset", {}, h("legend", {}, "Tools"));
  for (const t of tools.items) {
    const box = h("input", { type: "checkbox", value: t.name, checked: (spec.tools || []).includes(t.name) });
    const c = control(t.name, box);
    picks.append(c.wrap);
  }
  if (!tools.items.length) picks.append(h("p", { class: "muted" }, "No tools yet."));
  const submit = h("button", { type: "submit" }, id ? "Save" : "Create");
  const form = h("form", { class: "card", novalidate: true, onsubmit: async (ev) => {
    ev.preventDefault();
    clearFieldErrors(form, err);
    const body = { ...spec, name: name.input.value.trim(), max_steps: Number(steps.input.value),
      tools: [...picks.querySelectorAll("input:checked")].map((b) => b.value) };
    if (model.input.value.trim()) body.model = model.input.value.trim(); else delete body.model;
    if (promptFile.input.value.trim()) { body.prompt = promptFile.input.value.trim(); delete body.system_prompt; }
    else { body.system_prompt = system.input.value; delete body.prompt; }
    try {
      await (id ? api("PUT", `/agents/${id}`, body) : api("POST", "/agents", body));
      toast(id ? `Saved ${body.name}` : `Created ${body.name}`);
      location.hash = "#/agents";
    } catch (e) {
      if (e.status !== 401) showFieldErrors(form, err, e);
    }
  } }, h("div", { class: "bar" }, h("h1", {}, id ? `Edit ${spec.name}` : "Create agent"), h("a", { href: "#/agents" }, "Back to agents")),
    err, h("div", { class: "grid" }, name.wrap, model.wrap, steps.wrap), promptFile.wrap, system.wrap, picks, submit);
  main.replaceChildren(form);
  name.input.focus();
}

async function chatPage(id) {
  const agent = await api("GET", `/agents/${id}`);
  const messages = [];
  let conversation = null;
  const log = h("div", { "aria-live": "polite" });
  const text = control("Message", h("textarea", { rows: 2 }));
  const context = control("Context (JSON)", h("textarea", { rows: 2 }, "{}"), { hint: "Optional: what the calling application knows, e.g. the user's id." });
  const send = h("button", { type: "submit" }, "Send");
  const form = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    const content = text.input.value.trim();
    if (!content) return;
    let ctx;
    try { ctx = JSON.parse(context.input.value || "{}"); } catch { log.append(h("p", { class: "error" }, "The context is not valid JSON.")); return; }
    messages.push({ role: "user", content });
    log.append(h("p", {}, h("strong", {}, "You: "), content));
    text.input.value = "";
    send.disabled = true;
    try {
      const r = await api("POST", `/agents/${id}/chat`, { messages, context: ctx, conversation_id: conversation || undefined });
      conversation = r.conversation_id;
      for (const c of r.tool_calls || []) {
        log.append(h("p", { class: "muted", "data-testid": "tool-call" }, `Tool ${c.tool}: `,
          h("span", { class: c.ok ? "outcome-success" : "outcome-failed" }, c.outcome)));
      }
      messages.push(...(r.messages || []));
      log.append(h("p", { "data-testid": "reply" }, h("strong", {}, `${agent.name}: `), r.reply));
    } catch (e) { if (e.status !== 401) log.append(h("p", { class: "error", role: "alert" }, e.message)); }
    finally { send.disabled = false; text.input.focus(); }
  } }, text.wrap, context.wrap, send);
  main.replaceChildren(h("div", { class: "bar" }, h("h1", {}, `Chat with ${agent.name}`), h("a", { href: "#/agents" }, "Back to agents")),
    h("div", { class: "card" }, log), form);
  text.input.focus();
}

// ---------- event subscriptions ----------

const EVENT_TYPES = ["call.succeeded", "call.failed", "webhook.created", "webhook.updated", "webhook.deleted",
  "tool.linked", "tool.unlinked", "conversation.completed"];

async function subscriptionsPage() {
  const [subs, secrets] = await Promise.all([api("GET", "/subscriptions"), api("GET", "/secrets")]);
  const msg = h("div", {});
  const deliveries = h("div", {});
  const rows = subs.items.map((s) => {
    const log = h("button", { type: "button", class: "secondary" }, "Deliveries");
    log.addEventListener("click", () => deliveryLog(s, deliveries));
    return h("tr", {}, h("td", {}, s.name), h("td", { class: "url" }, s.url), h("td", {}, (s.event_types || []).join(", ")),
      h("td", {}, s.enabled ? "enabled" : `disabled${s.disabled_reason ? `: ${s.disabled_reason}` : ""}`), h("td", {}, log));
  });
  const name = control("Subscription name", h("input", {}), { field: "name" });
  const url = control("Receiver URL", h("input", { placeholder: "https://crm.example.com/hooks/toolgate" }), { field: "url" });
  const types = h("fieldset", {}, h("legend", {}, "Event types"));
  for (const t of EVENT_TYPES) types.append(control(t, h("input", { type: "checkbox", value: t })).wrap);
  const auth = control("Authentication", select([["none", "None (signature only)"], ["api_key", "API key"], ["client_secret", "Client secret"], ["basic", "Basic"]], "none"));
  const secretNames = [["", "Choose a secret"], ...secrets.items.map((x) => [x.name, x.name])];
  const header = control("Header", h("input", { value: "X-Api-Key" }));
  const secret = control("Auth secret", select(secretNames, ""), { field: "auth.secret" });
  const user = control("Username", h("input", {}));
  const authExtra = h("div", { class: "grid" });
  const syncAuth = () => {
    const a = auth.input.value;
    authExtra.replaceChildren(...(a === "api_key" ? [header.wrap, secret.wrap] : a === "client_secret" ? [secret.wrap] : a === "basic" ? [user.wrap, secret.wrap] : []));
  };
  auth.input.addEventListener("change", syncAuth);
  const shown = h("div", {});
  const form = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    const a = auth.input.value;
    const authBody = a === "api_key" ? { type: "api_key", header: header.input.value, secret: secret.input.value }
      : a === "client_secret" ? { type: "client_secret", secret: secret.input.value }
      : a === "basic" ? { type: "basic", username: user.input.value, password_secret: secret.input.value } : { type: "none" };
    const body = { name: name.input.value.trim(), url: url.input.value.trim(),
      event_types: [...types.querySelectorAll("input:checked")].map((b) => b.value), auth: authBody };
    try {
      const r = await api("POST", "/subscriptions", body);
      shown.replaceChildren(h("div", { class: "card", role: "alert" },
        h("p", {}, "Signing secret (shown once; store it now):"), h("pre", { "data-testid": "signing-secret" }, r.signing_secret),
        h("button", { type: "button", onclick: () => route() }, "Done")));
    } catch (e) { if (e.status !== 401) showError(msg, e); }
  } }, h("h2", {}, "Create subscription"), h("div", { class: "grid" }, name.wrap, url.wrap), types, auth.wrap, authExtra,
    h("button", { type: "submit" }, "Create subscription"));
  const list = subs.items.length
    ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "URL", "Events", "State", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))
    : h("div", { class: "card empty" }, h("h2", {}, "No event subscriptions yet"),
      h("p", { class: "muted" }, "Subscriptions receive signed events (calls, definition changes) at your URL."));
  main.replaceChildren(h("div", { class: "bar" }, h("h1", {}, "Event subscriptions")), msg, shown, list, deliveries, form);
}

async function deliveryLog(s, where) {
  const data = await api("GET", `/deliveries?subscription_id=${encodeURIComponent(s.id)}&limit=50`);
  const rows = data.items.map((d) => {
    const last = (d.attempts || [])[d.attempts.length - 1];
    const retry = d.status === "failed" ? h("button", { type: "button", class: "secondary", onclick: async () => {
      try { await api("POST", `/deliveries/${d.id}/retry`); toast("Retry queued"); deliveryLog(s, where); } catch (e) { toast(e.message); }
    } }, "Retry") : null;
    return h("tr", {}, h("td", {}, fmtTime(d.created_at)), h("td", {}, d.event_type), h("td", {}, d.status),
      h("td", {}, last ? (last.status ?? last.error ?? "") : ""), h("td", {}, retry));
  });
  where.replaceChildren(h("div", { class: "card" }, h("h2", {}, `Deliveries of ${s.name}`),
    rows.length ? h("table", {}, h("thead", {}, h("tr", {}, ["Created", "Event", "Status", "Last answer", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No deliveries yet.")));
}
