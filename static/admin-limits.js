/* The config page's token form: the limit, budget and expiry fields of a token entry
 * (CONTRACT.md §6: models, expires, rpm_limit, tpm_limit, max_parallel_requests, max_budget,
 * token_budget, budget_duration). Each is an input in the editor's "Limits" section, a
 * `.field[data-field=NAME]` like every other field, so the admin API's validation details
 * ({entry, field, message}) are shown next to it by admin.js's showEditorErrors.
 *
 * Values are sent as typed: numbers when they read as numbers, else the text, so the gateway's
 * validation (not this page) says what is wrong. An empty input removes the field.
 */
(function () {
  "use strict";

  const FIELDS = ["models", "expires", "rpm_limit", "tpm_limit", "max_parallel_requests", "max_budget", "token_budget", "budget_duration"];
  const NUMBERS = new Set(["rpm_limit", "tpm_limit", "max_parallel_requests", "max_budget", "token_budget"]);
  const $ = (id) => document.getElementById(id);

  function display(name, value) {
    if (value === undefined || value === null) return "";
    if (name === "models") return Array.isArray(value) ? value.join("\n") : String(value);
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function parse(name, text) {
    if (name === "models") return text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
    if (NUMBERS.has(name) && /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text)) return Number(text);
    return text;
  }

  function summary(entry) {
    const parts = [];
    if (entry.models) parts.push(`${[].concat(entry.models).length} model(s)`);
    if (entry.rpm_limit !== undefined) parts.push(`${entry.rpm_limit} rpm`);
    if (entry.tpm_limit !== undefined) parts.push(`${entry.tpm_limit} tpm`);
    if (entry.max_parallel_requests !== undefined) parts.push(`${entry.max_parallel_requests} parallel`);
    if (entry.max_budget !== undefined) parts.push(`$${entry.max_budget}` + (entry.budget_duration ? `/${entry.budget_duration}` : ""));
    if (entry.token_budget !== undefined) parts.push(`${entry.token_budget} tokens` + (entry.budget_duration ? `/${entry.budget_duration}` : ""));
    if (entry.expires) parts.push(`expires ${entry.expires}`);
    return parts.length ? "· " + parts.join(", ") : "· none set";
  }

  /** Show an entry's limit fields in the editor (open when any is set). */
  function fill(entry) {
    for (const name of FIELDS) $("f-" + name).value = display(name, entry[name]);
    $("limits").open = FIELDS.some((name) => entry[name] !== undefined && entry[name] !== null);
    $("limits-summary").textContent = summary(entry);
  }

  /** Copy the editor's limit fields onto `entry` (empty: removed). */
  function read(entry) {
    for (const name of FIELDS) {
      const text = $("f-" + name).value.trim();
      if (text === "") delete entry[name];
      else entry[name] = parse(name, text);
    }
    return entry;
  }

  window.GatewayAdmin.limits = { FIELDS, fill, read };
})();
