/* The gateway's config page: plain JavaScript, no build step, no external resources.
 *
 * It talks to the admin JSON API (docs/admin.md): the session cookie is HttpOnly, so the page
 * only keeps the CSRF token (from the page's <meta> or the login response) and sends it as
 * X-CSRF-Token on every change. Forms are generated from GET /admin/api/schema, which
 * describes each adapter type's config model, so new adapters get a form without changes here.
 */
(function () {
  "use strict";

  const API = "/admin/api";
  const state = {
    csrf: document.querySelector('meta[name="csrf-token"]').content || "",
    config: null, // the config data, secrets masked, in the file's shape
    etag: null,
    schema: null,
    status: null,
    errors: [], // details of the last failed save, for the table
    tests: {}, // token -> last test result
    editing: null, // {index, mode: "edit" | "add"}
    history: [],
    selectedVersion: null,
    rawLoadedEtag: null,
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // -- API ------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code;
      this.details = error.details || [];
    }
  }

  async function api(method, path, body, headers) {
    const options = { method, credentials: "same-origin", headers: Object.assign({}, headers || {}) };
    if (method !== "GET") options.headers["X-CSRF-Token"] = state.csrf;
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, options);
    if (response.status === 401 && path !== "/login") {
      showLogin("Your session ended; log in again.");
      throw new ApiError(401, null);
    }
    const etag = response.headers.get("ETag");
    if (etag) state.etag = etag.replace(/"/g, "");
    if (response.status === 204) return { response, data: null };
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return { response, data };
  }

  // -- login ----------------------------------------------------------------------------------

  function showLogin(message) {
    document.body.className = "logged-out";
    $("app").hidden = true;
    $("topbar-right").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    if ($("editor").open) $("editor").close();
    $("login-token").focus();
  }

  async function login(event) {
    event.preventDefault();
    const token = $("login-token").value.trim();
    $("login-error").textContent = "";
    const button = event.submitter || $("login-form").querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch(API + "/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token }),
      });
      if (response.status === 204) {
        state.csrf = response.headers.get("X-CSRF-Token") || "";
        $("login-token").value = "";
        await start();
      } else if (response.status === 429) {
        $("login-error").textContent = "Too many failed attempts; wait a minute and try again.";
      } else {
        $("login-error").textContent = "Wrong admin token.";
      }
    } catch (error) {
      $("login-error").textContent = "The gateway did not answer.";
    } finally {
      button.disabled = false;
    }
  }

  async function logout() {
    await fetch(API + "/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": state.csrf } });
    state.csrf = "";
    showLogin("Logged out.");
  }

  // -- start ----------------------------------------------------------------------------------

  async function start() {
    try {
      const session = (await api("GET", "/session")).data;
      if (session.csrf_token) state.csrf = session.csrf_token;
      const [schema, status] = await Promise.all([api("GET", "/schema"), api("GET", "/status")]);
      state.schema = schema.data;
      state.status = status.data;
      await loadConfig();
    } catch (error) {
      if (error.status !== 401) showBanner("error", "Could not load the config: " + error.message);
      return;
    }
    document.body.className = "logged-in";
    $("login").hidden = true;
    $("app").hidden = false;
    $("topbar-right").hidden = false;
    $("file-path").textContent = state.status.path || "in-memory config (read-only)";
    fillTypeSelect();
    renderStatus();
    if (!state.poller) state.poller = setInterval(poll, 4000);
  }

  async function loadConfig() {
    state.config = (await api("GET", "/config")).data;
    renderTokens();
  }

  async function poll() {
    if ($("app").hidden) return;
    try {
      const previous = state.etag;
      state.status = (await api("GET", "/status")).data;
      renderStatus();
      if (state.status.version !== previous && !$("editor").open) {
        await loadConfig();
        if (!$("tab-history").hidden) loadHistory();
        toast("The config changed on disk and was reloaded.");
      }
    } catch (error) {
      /* the next poll tries again */
    }
  }

  function renderStatus() {
    const status = state.status;
    if (status.disk_error) {
      showBanner("warn", "The file on disk has an edit that cannot be loaded, so the running config is unchanged: " + status.disk_error.message);
    } else if (!status.writable) {
      showBanner("warn", "This gateway was started from a config object, not a file: the config can be viewed and tested but not saved.");
    } else if ($("banner").dataset.kind !== "error") {
      hideBanner();
    }
  }

  function showBanner(kind, message, details) {
    const banner = $("banner");
    banner.className = "banner banner-" + kind;
    banner.dataset.kind = kind;
    const dismiss = el("button", { type: "button", class: "banner-close", "aria-label": "Dismiss", title: "Dismiss", onclick: dismissBanner }, "×");
    banner.replaceChildren(dismiss, el("div", { text: message }));
    if (details && details.length) banner.append(el("ul", {}, details.map((d) => el("li", { text: describeIssue(d) }))));
    banner.hidden = false;
  }

  function dismissBanner() {
    hideBanner();
    if (state.errors.length) {
      state.errors = [];
      renderTokens();
    }
  }

  function hideBanner() {
    $("banner").hidden = true;
    $("banner").dataset.kind = "";
  }

  let toastTimer = null;
  function toast(message, isError) {
    const node = $("toast");
    node.textContent = message;
    node.className = "toast" + (isError ? " error" : "");
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (node.hidden = true), 4500);
  }

  function describeIssue(detail) {
    const where = [];
    if (detail.entry !== null && detail.entry !== undefined) {
      where.push(typeof detail.entry === "number" ? `entry #${detail.entry}` : `token ${entryName(detail.entry)}`);
    }
    if (detail.field) where.push(detail.field);
    return (where.length ? where.join(" · ") + ": " : "") + detail.message;
  }

  // -- the config's shape ---------------------------------------------------------------------

  function entries() {
    const config = state.config;
    if (Array.isArray(config)) return config;
    return (config && config.tokens) || [];
  }

  function withEntries(list) {
    if (Array.isArray(state.config)) return list;
    return Object.assign({}, state.config || {}, { tokens: list });
  }

  function typeInfo(type) {
    const types = state.schema.types;
    if (types[type]) return types[type];
    return Object.values(types).find((t) => t.aliases.includes(type)) || null;
  }

  function entryName(token) {
    const entry = entries().find((e) => e && e.token === token);
    return entry ? labelOf(entry, entries().indexOf(entry)) : token;
  }

  function labelOf(entry, index) {
    return (entry && entry.name) || `${(entry && entry.type) || "entry"}#${index}`;
  }

  // -- tokens table ---------------------------------------------------------------------------

  function renderTokens() {
    const list = entries();
    const body = $("tokens-body");
    body.replaceChildren();
    $("token-count").textContent = `(${list.length})`;
    $("tokens-empty").hidden = list.length > 0;
    list.forEach((entry, index) => {
      const errors = state.errors.filter((d) => d.entry === entry.token || d.entry === index);
      body.append(tokenRow(entry, index, errors.length > 0));
      if (errors.length) {
        body.append(el("tr", { class: "detail error" }, el("td", { colspan: 8 }, errors.map((d) => el("div", { text: `${d.field || "entry"}: ${d.message}` })))));
      }
      const test = state.tests[entry.token];
      if (test) body.append(testRow(test));
    });
  }

  const ICONS = {
    copy: "M8 8h11v11H8zM5 16V5h11",
    pause: "M12 3a9 9 0 1 0 0 18a9 9 0 0 0 0-18zM10 9v6M14 9v6",
    play: "M12 3a9 9 0 1 0 0 18a9 9 0 0 0 0-18zM10 8.5l5 3.5l-5 3.5z",
    trash: "M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
  };

  /** A small outlined icon button (inline SVG: nothing is fetched) with a tooltip and label. */
  function iconButton(icon, label, onclick, extraClass) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", ICONS[icon]);
    svg.append(path);
    return el("button", { type: "button", class: "btn btn-ghost btn-sm btn-icon " + (extraClass || ""), title: label, "aria-label": label, onclick }, svg);
  }

  function chips(items) {
    if (!items.length) return el("span", { class: "dash", text: "—" });
    return el("div", { class: "chips" }, items);
  }

  function tokenRow(entry, index, hasError) {
    const config = (entry && entry.config) || {};
    const info = typeInfo(entry.type);
    const enabled = entry.enabled !== false;
    let model = config.model ? el("span", { text: config.model }) : null;
    let strategy = el("span", { class: "dash", text: "—" });
    let pool = [];
    const mapping = config["model-2-token"] || config.model_2_token;
    if (Array.isArray(config.token_pool)) {
      strategy = el("span", { text: config.router_strategy || "round-robin" });
      pool = config.token_pool.map((t, i) => {
        const weight = Array.isArray(config.weights) && config.weights[i] !== undefined ? ` ×${config.weights[i]}` : "";
        return el("span", { class: "chip", title: t, text: entryName(t) + weight });
      });
    } else if (mapping && typeof mapping === "object") {
      strategy = el("span", { text: "by model" });
      pool = Object.entries(mapping).map(([m, t]) =>
        el("span", { class: "chip", title: t }, m, el("span", { class: "chip-arrow", text: " → " }), entryName(t))
      );
      model = el("span", { class: "muted", text: Object.keys(mapping).filter((m) => m !== "default").join(", ") || "—" });
    }
    if (!model) {
      model = info && info.default_model ? el("span", { class: "muted", text: `${info.default_model} (default)` }) : el("span", { class: "dash", text: "—" });
    }
    const status = [el("span", { class: "pill " + (enabled ? "pill-ok" : "pill-off"), text: enabled ? "enabled" : "disabled" })];
    if (entry.internal) status.push(el("span", { class: "pill pill-internal", text: "internal" }));
    const actions = el(
      "td",
      { class: "actions" },
      el("button", { type: "button", class: "btn btn-sm btn-test", title: "Send a one-line prompt through this token", disabled: !enabled, onclick: () => testToken(entry) }, "Test"),
      el("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: () => openEditor(index, "edit") }, "Edit"),
      iconButton("copy", "Duplicate", () => openEditor(index, "duplicate")),
      iconButton(enabled ? "pause" : "play", enabled ? "Disable" : "Enable", () => toggleEntry(index)),
      iconButton("trash", "Delete", () => deleteEntry(index), "btn-danger")
    );
    return el(
      "tr",
      { class: "entry" + (enabled ? "" : " disabled") + (hasError ? " has-error" : ""), dataset: { index: String(index), token: entry.token || "" } },
      el("td", { class: "name" }, el("strong", { text: labelOf(entry, index) })),
      el("td", { class: "token" }, el("span", { class: "token-text", title: entry.token || "", text: entry.token || "—" })),
      el("td", { class: "type" }, el("span", { class: "pill pill-type", text: entry.type || "?" })),
      el("td", { class: "model" }, model),
      el("td", { class: "strategy" }, strategy),
      el("td", {}, chips(pool)),
      el("td", { class: "status" }, status),
      actions
    );
  }

  function testRow(test) {
    if (test.pending) return el("tr", { class: "detail" }, el("td", { colspan: 8, class: "muted", text: "Testing…" }));
    const cells = [];
    if (test.ok) {
      cells.push(el("span", { class: "test-ok", text: "✓ answered" }), el("span", { class: "latency", text: `${test.latency_ms} ms` }));
      if (test.served_by && test.served_by !== test.name) cells.push(el("span", { class: "muted", text: `via ${test.served_by} · ` }));
      cells.push(el("span", { class: "test-content", text: test.content || (test.tool_calls ? "(tool calls)" : "(empty answer)") }));
    } else {
      const error = test.error || {};
      cells.push(el("span", { class: "test-fail", text: `✗ ${test.status || ""} ${error.code || "error"}` }));
      if (test.latency_ms !== undefined) cells.push(el("span", { class: "latency", text: `${test.latency_ms} ms` }));
      cells.push(el("span", { text: error.message || "" }));
    }
    return el("tr", { class: "detail test-result" }, el("td", { colspan: 8 }, cells));
  }

  async function testToken(entry) {
    state.tests[entry.token] = { pending: true };
    renderTokens();
    try {
      state.tests[entry.token] = (await api("POST", "/test", { token: entry.token })).data;
    } catch (error) {
      state.tests[entry.token] = { ok: false, error: { code: error.code, message: error.message }, status: error.status };
    }
    renderTokens();
  }

  // -- saving ---------------------------------------------------------------------------------

  /** PUT the whole config; returns true when applied, else shows the problems and returns false. */
  async function saveConfig(config, onInvalid) {
    try {
      const { data } = await api("PUT", "/config", config, state.etag ? { "If-Match": `"${state.etag}"` } : {});
      state.errors = [];
      hideBanner();
      await loadConfig();
      renderStatus();
      if (!$("tab-history").hidden) loadHistory();
      toast(data.changed ? `Saved and applied (version ${data.version}): ${data.summary}` : "No changes to save.");
      return true;
    } catch (error) {
      if (error.status === 401) return false;
      if (error.code === "invalid_config") {
        state.errors = error.details;
        renderTokens();
        if (!onInvalid || !onInvalid(error.details)) {
          showBanner("error", "The config was not saved. Fix these problems and try again:", error.details);
        }
      } else if (error.code === "config_changed") {
        showBanner("error", error.message);
        await loadConfig();
      } else {
        showBanner("error", "The config was not saved: " + error.message);
      }
      return false;
    }
  }

  async function toggleEntry(index) {
    const list = structuredClone(entries());
    const entry = list[index];
    if (entry.enabled === false) delete entry.enabled;
    else entry.enabled = false;
    await saveConfig(withEntries(list));
  }

  async function deleteEntry(index) {
    const entry = entries()[index];
    if (!window.confirm(`Delete the token “${labelOf(entry, index)}”? Clients using it will be refused at once.`)) return;
    const list = structuredClone(entries());
    list.splice(index, 1);
    await saveConfig(withEntries(list));
  }

  // -- the entry editor -----------------------------------------------------------------------

  function randomToken() {
    const bytes = new Uint8Array(18);
    crypto.getRandomValues(bytes);
    return "sk-gw-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function fillTypeSelect() {
    const select = $("f-type");
    select.replaceChildren(...Object.keys(state.schema.types).map((t) => el("option", { value: t, text: t })));
  }

  function openEditor(index, mode) {
    const list = entries();
    let entry;
    if (mode === "add") {
      entry = { token: randomToken(), type: "openai", config: {} };
      state.editing = { index: list.length, mode: "add" };
    } else if (mode === "duplicate") {
      entry = structuredClone(list[index]);
      entry.token = randomToken();
      if (entry.name) entry.name = entry.name + "-copy";
      state.editing = { index: index + 1, mode: "add" };
    } else {
      entry = structuredClone(list[index]);
      state.editing = { index, mode: "edit" };
    }
    state.editing.original = entry;
    $("editor-title").textContent = mode === "edit" ? `Edit ${labelOf(entry, index)}` : mode === "duplicate" ? `Duplicate ${labelOf(list[index], index)}` : "Add token";
    $("editor-note").textContent = mode === "edit" ? "" : "A new random token was generated; change it if you like.";
    $("f-name").value = entry.name || "";
    $("f-token").value = entry.token || "";
    const info = typeInfo(entry.type);
    const select = $("f-type");
    if (!info && entry.type) select.append(el("option", { value: entry.type, text: entry.type + " (unknown)" }));
    select.value = info ? info.type : entry.type;
    state.editing.type = select.value;
    $("f-enabled").checked = entry.enabled !== false;
    $("f-internal").checked = entry.internal === true;
    renderConfigFields(select.value, entry.config || {});
    window.GatewayAdmin.limits.fill(entry);
    clearEditorErrors();
    $("editor").showModal();
    $("f-name").focus();
  }

  function renderConfigFields(type, config) {
    const info = typeInfo(type);
    const container = $("config-fields");
    container.replaceChildren();
    $("type-help").replaceChildren(...withCode(info ? info.description || "" : `Unknown adapter type “${type}”.`));
    $("type-help").hidden = !!info && !info.description;
    if (!info) return;
    const main = info.fields.filter((f) => f.group !== "sampling");
    const sampling = info.fields.filter((f) => f.group === "sampling");
    container.append(el("div", { class: "section-title", text: "Config" }));
    main.forEach((f) => container.append(fieldNode(f, config, info)));
    if (sampling.length) {
      const hasValues = sampling.some((f) => config[f.name] !== undefined);
      const details = el("details", { class: "sampling", open: hasValues }, el("summary", { text: "Default sampling parameters (used when a request has none)" }));
      const grid = el("div", { class: "grid-2" });
      sampling.forEach((f) => grid.append(fieldNode(f, config, info)));
      details.append(grid);
      container.append(details);
    }
    const known = new Set(info.fields.map((f) => f.name));
    const extra = Object.keys(config).filter((k) => !known.has(k));
    state.editing.extra = Object.fromEntries(extra.map((k) => [k, config[k]]));
    if (extra.length) {
      container.append(el("p", { class: "hint muted small", text: `Also kept as written: ${extra.join(", ")} (not fields of ${type}).` }));
    }
  }

  /** Docstring text as nodes: line breaks unwrapped, `backticked` parts as <code>. */
  function withCode(text) {
    return text
      .replace(/\s*\n\s*/g, " ")
      .split("`")
      .map((part, i) => (i % 2 ? el("code", { text: part }) : document.createTextNode(part)));
  }

  function displayValue(field, value) {
    if (value === undefined || value === null) return "";
    if (field.kind === "list" && Array.isArray(value)) return value.join("\n");
    if (field.kind === "map" && value && typeof value === "object") return Object.entries(value).map(([k, v]) => `${k} = ${v}`).join("\n");
    if (typeof value === "object" || (field.kind === "json" && typeof value !== "string")) return JSON.stringify(value);
    return String(value);
  }

  function fieldNode(field, config, info) {
    const id = "c-" + field.name.replace(/[^a-zA-Z0-9_-]/g, "_");
    const value = config[field.name];
    let input;
    const placeholder = field.default !== null && field.default !== undefined ? `default: ${typeof field.default === "object" ? JSON.stringify(field.default) : field.default}` : "";
    if (field.kind === "enum" || field.kind === "boolean") {
      const options = field.kind === "boolean" ? [true, false] : field.options;
      input = el("select", { id });
      if (!field.required) input.append(el("option", { value: "", text: placeholder ? `(${placeholder})` : "(not set)" }));
      options.forEach((o) => input.append(el("option", { value: JSON.stringify(o), text: String(o) })));
      input.value = value === undefined || value === null ? "" : JSON.stringify(value);
    } else if (field.kind === "list" || field.kind === "map") {
      input = el("textarea", { id, rows: 3, spellcheck: "false", placeholder: field.kind === "map" ? "model = token, one per line" : "one per line" });
      input.value = displayValue(field, value);
    } else {
      input = el("input", {
        id,
        type: "text",
        class: field.kind === "secret" ? "secret" : field.kind === "json" ? "mono" : null,
        spellcheck: "false",
        autocomplete: "off",
        inputmode: field.kind === "number" || field.kind === "integer" ? "decimal" : null,
        placeholder: field.kind === "secret" ? "the secret, or ${ENV_VAR}" : placeholder || (field.kind === "json" ? "text, or JSON" : ""),
      });
      input.value = displayValue(field, value);
    }
    input.dataset.configField = field.name;
    const hints = [];
    if (field.kind === "secret") hints.push(value ? "Shown masked: leave it to keep the stored secret, or type a new one. ${VAR} reads the environment." : "${VAR} reads it from the environment at load time.");
    if (field.kind === "json") hints.push("Text, or a JSON value such as {\"https\": \"http://host:port\"}.");
    if (field.kind === "list" && field.name === "token_pool") hints.push("Tokens of this config, one per line (internal ones allowed).");
    if (field.kind === "map") hints.push("One “model = token” per line; the model default catches the rest.");
    if (field.description) hints.push(field.description);
    return el(
      "div",
      { class: "field", dataset: { field: "config." + field.name } },
      el("label", { for: id }, field.name, field.required ? el("span", { class: "req", text: "required" }) : null),
      input,
      hints.length ? el("p", { class: "hint", text: hints.join(" ") }) : null,
      el("p", { class: "field-error" })
    );
  }

  function parseScalar(text, kind) {
    if (kind === "number" || kind === "integer") {
      return /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text) ? Number(text) : text;
    }
    if (kind === "boolean") return text === "true" ? true : text === "false" ? false : text;
    return text;
  }

  function readConfigFields(type) {
    const info = typeInfo(type);
    const config = Object.assign({}, state.editing.extra || {});
    if (!info) return Object.assign(config, (state.editing.original && state.editing.original.config) || {});
    for (const field of info.fields) {
      const input = $("config-fields").querySelector(`[data-config-field="${CSS.escape(field.name)}"]`);
      if (!input) continue;
      const text = input.value;
      if (text.trim() === "") continue;
      if (field.kind === "enum" || field.kind === "boolean") config[field.name] = JSON.parse(text);
      else if (field.kind === "number" || field.kind === "integer") config[field.name] = parseScalar(text.trim(), field.kind);
      else if (field.kind === "list") {
        config[field.name] = text.split("\n").map((s) => s.trim()).filter(Boolean).map((s) => parseScalar(s, field.item));
      } else if (field.kind === "map") {
        const map = {};
        for (const line of text.split("\n")) {
          if (!line.trim()) continue;
          const at = line.indexOf("=");
          if (at < 0) map[line.trim()] = "";
          else map[line.slice(0, at).trim()] = parseScalar(line.slice(at + 1).trim(), field.item);
        }
        config[field.name] = map;
      } else if (field.kind === "json") {
        let value = text;
        try {
          const parsed = JSON.parse(text);
          if (parsed !== null && typeof parsed !== "string") value = parsed;
        } catch (error) {
          /* plain text */
        }
        config[field.name] = value;
      } else {
        config[field.name] = field.kind === "secret" ? text.trim() : text;
      }
    }
    return config;
  }

  function readEntry() {
    const original = state.editing.original || {};
    const entry = Object.assign({}, original);
    entry.token = $("f-token").value.trim();
    const name = $("f-name").value.trim();
    if (name) entry.name = name;
    else delete entry.name;
    const chosen = $("f-type").value;
    const originalInfo = original.type ? typeInfo(original.type) : null;
    entry.type = originalInfo && originalInfo.type === chosen ? original.type : chosen; // keep an alias as written
    if ($("f-enabled").checked) delete entry.enabled;
    else entry.enabled = false;
    if ($("f-internal").checked) entry.internal = true;
    else delete entry.internal;
    window.GatewayAdmin.limits.read(entry);
    entry.config = readConfigFields(entry.type);
    // keep the entry's key order as written; new keys in the usual order after them
    const ordered = {};
    for (const key of Object.keys(original)) if (key in entry) ordered[key] = entry[key];
    for (const key of ["token", "name", "type", "enabled", "internal", ...window.GatewayAdmin.limits.FIELDS, "config"]) if (key in entry) ordered[key] = entry[key];
    for (const key of Object.keys(entry)) if (!(key in ordered)) ordered[key] = entry[key];
    return ordered;
  }

  function clearEditorErrors() {
    $("editor-errors").hidden = true;
    $("editor-errors").replaceChildren();
    for (const node of $("editor-form").querySelectorAll(".field")) {
      node.classList.remove("invalid");
      node.querySelector(".field-error").textContent = "";
    }
  }

  function showEditorErrors(details, entry, index) {
    clearEditorErrors();
    const mine = details.filter((d) => d.entry === entry.token || d.entry === index);
    const others = details.filter((d) => !mine.includes(d));
    const unplaced = [];
    for (const detail of mine) {
      const field = detail.field || "";
      let node = null;
      for (const candidate of $("editor-form").querySelectorAll(".field")) {
        const name = candidate.dataset.field;
        if (field === name || field.startsWith(name + ".") || field.startsWith(name + "[")) node = candidate;
      }
      if (node) {
        node.classList.add("invalid");
        const fold = node.closest("details");
        if (fold) fold.open = true;
        const error = node.querySelector(".field-error");
        error.textContent = (error.textContent ? error.textContent + " " : "") + detail.message + (field !== node.dataset.field ? ` (${field})` : "");
      } else {
        unplaced.push(detail);
      }
    }
    const listed = unplaced.concat(others);
    if (listed.length) {
      const box = $("editor-errors");
      box.append(el("div", { text: mine.length ? "Not saved:" : "Not saved: other entries have problems:" }), el("ul", {}, listed.map((d) => el("li", { text: describeIssue(d) }))));
      box.hidden = false;
    }
    const first = $("editor-form").querySelector(".field.invalid input, .field.invalid select, .field.invalid textarea");
    if (first) first.focus();
    return true;
  }

  async function saveEditor(event) {
    event.preventDefault();
    const entry = readEntry();
    const { index, mode } = state.editing;
    const list = structuredClone(entries());
    if (mode === "add") list.splice(index, 0, entry);
    else list[index] = entry;
    $("editor-save").disabled = true;
    try {
      const ok = await saveConfig(withEntries(list), (details) => showEditorErrors(details, entry, index));
      if (ok) $("editor").close();
    } finally {
      $("editor-save").disabled = false;
    }
  }

  // -- raw editor -----------------------------------------------------------------------------

  async function loadRaw() {
    try {
      const { data } = await api("GET", "/config/raw");
      $("raw-format").textContent = data.format;
      $("raw-text").value = data.text;
      state.rawLoadedEtag = state.etag;
      $("raw-result").hidden = true;
    } catch (error) {
      if (error.status !== 401) showRawResult("error", error.message);
    }
  }

  function showRawResult(kind, message, details) {
    const box = $("raw-result");
    box.className = "result banner banner-" + kind;
    box.replaceChildren(el("div", { text: message }));
    if (details && details.length) box.append(el("ul", {}, details.map((d) => el("li", { text: describeIssue(d) }))));
    box.hidden = false;
  }

  async function validateRaw() {
    try {
      await api("POST", "/config/raw/validate", { text: $("raw-text").value });
      showRawResult("ok", "Valid: this file would load.");
    } catch (error) {
      if (error.status !== 401) showRawResult("error", error.message, error.details);
    }
  }

  async function saveRaw() {
    try {
      const headers = state.rawLoadedEtag ? { "If-Match": `"${state.rawLoadedEtag}"` } : {};
      const { data } = await api("PUT", "/config/raw", { text: $("raw-text").value }, headers);
      await loadConfig();
      await loadRaw();
      showRawResult("ok", data.changed ? `Saved and applied (version ${data.version}): ${data.summary}` : "No changes to save.");
    } catch (error) {
      if (error.status !== 401) showRawResult("error", "Not saved: " + error.message, error.details);
    }
  }

  function rawKeydown(event) {
    if (event.key === "Tab" && !event.shiftKey) {
      event.preventDefault();
      const area = event.target;
      const start = area.selectionStart;
      area.setRangeText("  ", start, area.selectionEnd, "end");
    }
  }

  // -- history --------------------------------------------------------------------------------

  function formatTime(iso) {
    const date = new Date(iso);
    return isNaN(date) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  async function loadHistory() {
    try {
      state.history = (await api("GET", "/history")).data.data;
    } catch (error) {
      return;
    }
    const list = $("history-list");
    list.replaceChildren();
    if (!state.history.length) {
      list.append(el("li", { class: "muted", text: "No saved versions yet. Every save from this page, the API or an edit on disk is kept here." }));
    }
    for (const version of state.history) {
      list.append(
        el(
          "li",
          { class: version.id === state.selectedVersion ? "selected" : null, dataset: { version: String(version.id) }, onclick: () => showVersion(version.id) },
          el(
            "div",
            { class: "v-head" },
            el("span", { class: "v-id", text: `#${version.id}` }),
            el("span", { class: "pill", text: version.source }),
            version.current ? el("span", { class: "pill pill-ok", text: "current" }) : null,
            el("span", { class: "v-time", text: formatTime(version.time) })
          ),
          el("div", { class: "v-summary", text: version.summary })
        )
      );
    }
    if (state.selectedVersion !== null) showVersion(state.selectedVersion, true);
  }

  async function showVersion(id, quiet) {
    state.selectedVersion = id;
    for (const item of $("history-list").children) item.classList.toggle("selected", item.dataset.version === String(id));
    let data;
    try {
      data = (await api("GET", `/history/${id}`)).data;
    } catch (error) {
      if (!quiet && error.status !== 401) toast(error.message, true);
      return;
    }
    const version = state.history.find((v) => v.id === id) || {};
    $("diff-title").textContent = `Version #${id} · ${formatTime(data.time)}`;
    $("diff-summary").textContent = data.summary;
    $("rollback").disabled = !!version.current;
    const diff = $("diff");
    diff.replaceChildren();
    if (!data.diff) {
      diff.append(el("span", { class: "meta", text: "This version is the current file." }));
      return;
    }
    for (const line of data.diff.split("\n")) {
      let kind = null;
      if (line.startsWith("+++") || line.startsWith("---")) kind = "meta";
      else if (line.startsWith("@@")) kind = "hunk";
      else if (line.startsWith("+")) kind = "add";
      else if (line.startsWith("-")) kind = "del";
      diff.append(el("span", { class: kind, text: line || " " }));
    }
  }

  async function rollback() {
    const id = state.selectedVersion;
    if (id === null || !window.confirm(`Roll back to version #${id}? This is saved and applied as a new version.`)) return;
    try {
      const { data } = await api("POST", `/history/${id}/rollback`);
      await loadConfig();
      state.selectedVersion = null;
      $("diff").replaceChildren();
      $("diff-title").textContent = "Select a version";
      $("diff-summary").textContent = "";
      $("rollback").disabled = true;
      await loadHistory();
      toast(data.changed ? `Rolled back (version ${data.version}): ${data.summary}` : "That version is already the current one.");
    } catch (error) {
      if (error.status === 401) return;
      if (error.code === "invalid_config") showBanner("error", "This version can no longer be loaded: " + error.message, error.details);
      else toast(error.message, true);
    }
  }

  // -- tabs and wiring ------------------------------------------------------------------------

  function showTab(name) {
    for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
    for (const panel of ["tokens", "raw", "history", "usage"]) $("tab-" + panel).hidden = panel !== name;
    if (name === "raw") loadRaw();
    if (name === "history") loadHistory();
    if (name === "usage") window.GatewayAdmin.usage.show();
  }

  function wire() {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
    $("add-token").addEventListener("click", () => openEditor(null, "add"));
    $("editor-form").addEventListener("submit", saveEditor);
    $("editor-cancel").addEventListener("click", () => $("editor").close());
    $("editor-close").addEventListener("click", () => $("editor").close());
    $("f-token-generate").addEventListener("click", () => ($("f-token").value = randomToken()));
    $("f-type").addEventListener("change", () => {
      const current = readConfigFields(state.editing.type);
      state.editing.type = $("f-type").value;
      renderConfigFields(state.editing.type, current);
    });
    $("raw-reload").addEventListener("click", loadRaw);
    $("raw-validate").addEventListener("click", validateRaw);
    $("raw-save").addEventListener("click", saveRaw);
    $("raw-text").addEventListener("keydown", rawKeydown);
    $("rollback").addEventListener("click", rollback);
  }

  // what admin-limits.js and admin-usage.js build on (loaded after this file)
  window.GatewayAdmin = { api, el, state, toast, entries, labelOf, ApiError };

  wire();
  if (state.csrf) start();
  else showLogin();
})();
