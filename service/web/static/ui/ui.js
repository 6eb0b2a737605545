// The /ui/ page: runs a Bundle through the service's own endpoints (same origin only) and shows
// what an EHR and a clinician would see: cards, grades, the work-up, the input issues beside the
// input, and the laboratory trend drawn by Vega from the spec the service compiles.
import { expressionInterpreter } from "./vendor/vega-interpreter.js";

const $ = (id) => document.getElementById(id);
const markdown = window.markdownit({ html: false, linkify: false, typographer: false });
const state = { settings: null, result: null, trends: [], view: null, lines: new Map() };

// --- small helpers ----------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows, caption) {
  return el("div", { class: "table-wrap" },
    el("table", {},
      caption ? el("caption", { class: "hint", text: caption }) : null,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c)))))));
}

async function readJson(response) {
  const text = await response.text();
  try { return { text, json: JSON.parse(text) }; } catch { return { text, json: null }; }
}

function outcomeText(outcome, fallback) {
  const issues = outcome && outcome.resourceType === "OperationOutcome" ? outcome.issue || [] : [];
  if (!issues.length) return [fallback];
  return issues.map((issue) => {
    const where = (issue.expression || issue.location || [])[0];
    return `${issue.diagnostics || issue.details?.text || issue.code}${where ? ` (at ${where})` : ""}`;
  });
}

function showError(title, lines) {
  const box = $("input-error");
  box.replaceChildren(el("strong", { text: title }), el("ul", {}, lines.map((line) => el("li", { text: line }))));
  box.hidden = false;
  $("bundle-text").setAttribute("aria-invalid", "true");
}

function clearError() {
  $("input-error").hidden = true;
  $("input-error").replaceChildren();
  $("bundle-text").removeAttribute("aria-invalid");
}

function busy(text) { $("busy").textContent = text; $("run").disabled = Boolean(text); }

// --- where each element of the Bundle is in the (pretty-printed) text -------------------------------
// Mirrors JSON.stringify(value, null, 2): a child starts on its own line; a non-empty container closes
// on a line of its own; an empty one stays on its key's line.
function pathLines(value) {
  const lines = new Map();
  let line = 1;
  const walk = (node, path) => {
    lines.set(path, line);
    if (Array.isArray(node)) {
      if (!node.length) return;
      node.forEach((item, index) => { line += 1; walk(item, `${path}[${index}]`); });
      line += 1;
    } else if (node && typeof node === "object") {
      const keys = Object.keys(node).filter((key) => node[key] !== undefined);
      if (!keys.length) return;
      keys.forEach((key) => { line += 1; walk(node[key], `${path}.${key}`); });
      line += 1;
    }
  };
  walk(value, "Bundle");
  return lines;
}

function lineOf(location) {
  if (!location) return null;
  let path = location.replace(/^Bundle\b/, "Bundle");
  while (path) {
    if (state.lines.has(path)) return state.lines.get(path);
    const cut = Math.max(path.lastIndexOf("."), path.lastIndexOf("["));
    if (cut <= 0) break;
    path = path.slice(0, cut);
  }
  return null;
}

function goToLine(line) {
  const area = $("bundle-text");
  const starts = [0];
  for (let i = 0; i < area.value.length; i += 1) if (area.value[i] === "\n") starts.push(i + 1);
  const start = starts[line - 1] ?? 0;
  const end = (starts[line] ?? area.value.length + 1) - 1;
  area.focus();
  area.setSelectionRange(start, end);
  const lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 18;
  area.scrollTop = Math.max(0, (line - 3) * lineHeight);
}

// --- inputs -------------------------------------------------------------------------------------------
async function loadSettings() {
  const response = await fetch("/ui/settings");
  state.settings = await response.json();
  const select = $("draft-order");
  for (const order of state.settings.draftOrders) select.append(el("option", { value: order.id, text: order.label }));
  if (!state.settings.sandbox) {
    for (const radio of document.querySelectorAll("input[name=mode]")) if (radio.value !== "assess") radio.disabled = true;
    $("sandbox-note").textContent = "CDS Hooks try-out is off on this service (UI_SANDBOX); $assess works as usual.";
  } else {
    $("sandbox-note").textContent = "CDS Hooks calls from this page run without a client JWT (UI_SANDBOX is on: development only).";
  }
}

async function loadFixtures() {
  const response = await fetch("/ui/fixtures");
  const listing = await response.json();
  state.fixtures = listing.fixtures;
  for (const item of listing.fixtures) $("fixture").append(el("option", { value: item.file, text: item.file.replace(/\.json$/, "") }));
  if (!listing.fixtures.length) $("fixture-scenario").textContent = "No example bundles are installed with this service.";
}

async function chooseFixture() {
  const file = $("fixture").value;
  const item = (state.fixtures || []).find((f) => f.file === file);
  $("fixture-scenario").textContent = item ? item.scenario : "";
  if (!file) return;
  const response = await fetch(`/ui/fixtures/${encodeURIComponent(file)}`);
  const { text, json } = await readJson(response);
  $("bundle-text").value = json ? JSON.stringify(json, null, 2) : text;
  clearError();
}

function readUpload() {
  const file = $("bundle-file").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => { $("bundle-text").value = String(reader.result); $("fixture").value = ""; clearError(); };
  reader.readAsText(file);
}

// --- run ----------------------------------------------------------------------------------------------
async function run(event) {
  event.preventDefault();
  clearError();
  const mode = document.querySelector("input[name=mode]:checked").value;
  let text = $("bundle-text").value;
  let parsed = null;
  try { parsed = JSON.parse(text); } catch { parsed = null; }
  if (parsed !== null) {
    text = JSON.stringify(parsed, null, 2);
    $("bundle-text").value = text;  // pretty-printed, so issue locations map to lines
    state.lines = pathLines(parsed);
  } else {
    state.lines = new Map();
  }
  busy("Assessing…");
  try {
    const response = await fetch("/fhir/$assess", { method: "POST", headers: { "Content-Type": "application/fhir+json" }, body: text });
    const { text: responseText, json } = await readJson(response);
    $("raw-request").textContent = `POST /fhir/$assess\nContent-Type: application/fhir+json\n\n${text}`;
    $("raw-response").textContent = `HTTP ${response.status}\n\n${json ? JSON.stringify(json, null, 2) : responseText}`;
    if (!response.ok) {
      showError(`The service refused the Bundle (HTTP ${response.status}):`, outcomeText(json, responseText.slice(0, 300)));
      clearResults();
      return;
    }
    state.result = json;
    renderAssessment(json);
    busy("Drawing the trend…");
    await loadTrend(text);
    if (mode !== "assess") {
      busy(`Calling ${mode}…`);
      await runHook(mode, parsed);
    } else {
      $("cards").replaceChildren(el("p", { class: "hint", text: "$assess returns FHIR resources, not cards: choose a CDS Hooks hook to see cards." }));
    }
  } catch (error) {
    showError("The page could not reach the service:", [String(error)]);
  } finally {
    busy("");
  }
}

function clearResults() {
  for (const id of ["cards", "risk", "careplan", "issues", "chart", "trend-table"]) $(id).replaceChildren();
  $("trend-summary").textContent = "No trend: the Bundle was not assessed.";
  $("trend-summary").dataset.pointCount = "0";
  $("download-svg").disabled = true;
}

async function runHook(hook, bundle) {
  const service = state.settings.services.find((s) => s.hook === hook);
  const build = await fetch(`/ui/hook-request/${hook}`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ bundle, draftOrders: [$("draft-order").value] }),
  });
  const built = await readJson(build);
  if (!build.ok) { showError(`No ${hook} request could be built (HTTP ${build.status}):`, outcomeText(built.json, built.text)); return; }
  const request = built.json.request;
  const response = await fetch(`/ui/try/${service.id}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
  const answer = await readJson(response);
  $("raw-request").textContent = `POST /cds-services/${service.id}\nContent-Type: application/json\nAuthorization: Bearer <the EHR's signed JWT>\n\n${JSON.stringify(request, null, 2)}`;
  $("raw-response").textContent = `HTTP ${response.status}\n\n${answer.json ? JSON.stringify(answer.json, null, 2) : answer.text}`;
  if (!response.ok) { showError(`The ${hook} call was refused (HTTP ${response.status}):`, outcomeText(answer.json, answer.text)); return; }
  const left = Object.entries(built.json.notCarried || {}).map(([type, n]) => `${n} ${type}`);
  renderCards(answer.json.cards || [], left);
}

// --- what the service answered ----------------------------------------------------------------------
function resources(bundle, type) {
  return (bundle.entry || []).filter((e) => e.resource && e.resource.resourceType === type);
}

function renderAssessment(bundle) {
  const byUrl = new Map((bundle.entry || []).map((e) => [e.fullUrl, e.resource]));
  const risks = resources(bundle, "RiskAssessment");
  $("risk").replaceChildren(...(risks.length ? risks.map((entry) => {
    const risk = entry.resource;
    const rows = (risk.prediction || []).map((p) => {
      const grade = p.qualitativeRisk?.coding?.[0]?.code || "";
      return [p.outcome?.text || p.outcome?.coding?.[0]?.display || "", el("span", { class: `grade ${grade}`, text: grade }), p.rationale || ""];
    });
    return el("div", {}, el("p", { class: "hint", text: `Patient: ${risk.subject?.reference || "?"}` }),
      table(["Type", "Grade", "Why (rationale)"], rows));
  }) : [el("p", { class: "hint", text: "No patient was assessed." })]));

  const plans = resources(bundle, "CarePlan");
  $("careplan").replaceChildren(...plans.map((entry) => {
    const plan = entry.resource;
    const rows = (plan.activity || []).map((activity) => {
      if (activity.reference) {
        const request = byUrl.get(activity.reference.reference);
        const name = request?.code?.text || activity.reference.display || activity.reference.reference;
        return [name, request ? `proposed (${request.status}, ${request.intent})` : "open order", (activity.progress || []).map((n) => n.text).join(" ")];
      }
      const detail = activity.detail || {};
      return [detail.code?.text || detail.description || "", detail.status || "", detail.statusReason?.text || detail.description || ""];
    });
    return el("div", {}, el("p", { text: plan.description || "" }), table(["Test", "Status", "Why"], rows));
  }));

  const outcomes = resources(bundle, "OperationOutcome");
  const issues = outcomes.flatMap((entry) => entry.resource.issue || []);
  $("issues").replaceChildren(issues.length ? el("ol", { class: "issues" }, issues.map((issue) => {
    const where = (issue.expression || issue.location || [])[0];
    const line = lineOf(where);
    return el("li", {}, el("span", { class: `sev ${issue.severity}`, text: issue.severity }), " ",
      issue.diagnostics || issue.code, where ? el("div", { class: "hint" }, `at ${where} `,
        line ? el("button", { type: "button", class: "line", "aria-label": `Show input line ${line}`, onclick: () => goToLine(line) }, `line ${line}`) : null) : null);
  })) : el("p", { class: "hint", text: "No input was skipped." }));
}

function renderCards(cards, notCarried) {
  const nodes = cards.map((card) => {
    const indicator = ["info", "warning", "critical"].includes(card.indicator) ? card.indicator : "info";
    const icon = { info: "ℹ", warning: "⚠", critical: "✖" }[indicator];
    const detail = el("div", { class: "detail" });
    detail.innerHTML = markdown.render(card.detail || "");  // markdown-it with raw HTML off escapes the text
    const suggestions = (card.suggestions || []).map((s) => el("li", {},
      el("button", { type: "button", "aria-pressed": "false", onclick: (e) => e.currentTarget.setAttribute("aria-pressed", "true") },
        `${s.isRecommended ? "Recommended: " : ""}${s.label}`),
      el("ul", {}, (s.actions || []).map((a) => el("li", { class: "hint", text: `${a.type}: ${a.description || ""}` })))));
    const links = (card.links || []).map((link) => el("li", {}, el("a", { href: link.url, rel: "noopener" }, link.label)));
    const reasons = card.overrideReasons || [];
    const reasonId = `override-${card.uuid}`;
    return el("article", { class: `card ${indicator}`, "aria-label": `${indicator} card: ${card.summary}` },
      el("p", { class: "summary" }, el("span", { class: `indicator ${indicator}` }, `${icon} ${indicator}`), card.summary),
      detail,
      card.source ? el("p", { class: "source" }, "Source: ", card.source.url ? el("a", { href: card.source.url, rel: "noopener" }, card.source.label) : card.source.label) : null,
      suggestions.length ? el("div", {}, el("h4", { text: "Suggestions" }), el("ul", {}, suggestions)) : null,
      links.length ? el("div", {}, el("h4", { text: "Links" }), el("ul", {}, links)) : null,
      reasons.length ? el("div", { class: "meta" }, el("label", { for: reasonId, text: "Override reason " }),
        el("select", { id: reasonId }, el("option", { value: "", text: "(not overridden)" }),
          reasons.map((r) => el("option", { value: r.code, text: r.display || r.code })))) : null);
  });
  if (!nodes.length) nodes.push(el("p", { class: "hint", text: "The service returned no card for this patient." }));
  if (notCarried.length) nodes.push(el("p", { class: "hint", text: `Not carried by the CDS Hooks request (no prefetch key takes them): ${notCarried.join(", ")}.` }));
  $("cards").replaceChildren(...nodes);
}

// --- the trend -----------------------------------------------------------------------------------------
function chartWidth() {
  return Math.max(300, Math.min(1100, Math.floor($("trend").clientWidth - 40)));
}

async function loadTrend(text) {
  const response = await fetch(`/ui/trend?width=${chartWidth()}`, { method: "POST", headers: { "Content-Type": "application/fhir+json" }, body: text });
  const { json, text: raw } = await readJson(response);
  if (!response.ok) { showError(`No trend (HTTP ${response.status}):`, outcomeText(json, raw.slice(0, 300))); return; }
  showTrends(json.patients || []);
}

function showTrends(trends) {
  state.trends = trends;
  const select = $("trend-patient");
  select.replaceChildren(...trends.map((t, i) => el("option", { value: String(i), text: t.patient })));
  $("trend-patient-field").hidden = trends.length < 2;
  return drawTrend(0);
}

function tooltipHandler(handler, event, item, value) {
  const tip = $("chart-tooltip");
  if (!value || typeof value !== "object") { tip.hidden = true; return; }
  tip.replaceChildren(el("dl", {}, Object.entries(value).filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })])));
  const box = $("chart").getBoundingClientRect();
  const figure = $("chart").parentElement.getBoundingClientRect();
  tip.style.left = `${Math.min(event.clientX - figure.left + 12, box.width - 200)}px`;
  tip.style.top = `${event.clientY - figure.top + 12}px`;
  tip.hidden = false;
}

async function drawTrend(index) {
  const trend = state.trends[index];
  if (state.view) { state.view.finalize(); state.view = null; }
  $("chart").replaceChildren();
  if (!trend) {
    $("trend-summary").textContent = "No assessed patient: no trend.";
    $("trend-summary").dataset.pointCount = "0";
    return;
  }
  const counts = {};
  for (const p of trend.points) counts[p.status] = (counts[p.status] || 0) + 1;
  const words = Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ");
  $("trend-summary").textContent = `${trend.patient}: ${trend.pointCount} results plotted` +
    (trend.notPlotted ? `, ${trend.notPlotted} not plotted (no usable value or date)` : "") + (words ? ` (${words}).` : ".");
  $("trend-summary").dataset.pointCount = String(trend.pointCount);
  const runtime = vega.parse(trend.vega, null, { ast: true });
  state.view = new vega.View(runtime, { expr: expressionInterpreter, renderer: "svg", container: "#chart", hover: true });
  state.view.tooltip(tooltipHandler);
  await state.view.runAsync();
  $("chart").dataset.rendered = "true";
  $("download-svg").disabled = false;
  const when = (iso) => (iso ? iso.replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC") : "(no date)");
  const rows = trend.points.map((p) => [p.series, when(p.date), p.reported,
    p.value === null ? "not plotted" : `${p.value} ${p.unit}`,
    el("span", { class: `status-${p.status}`, text: p.statusText }), p.why,
    p.rangeLow !== null && p.rangeHigh !== null ? `${p.rangeLow}–${p.rangeHigh}` : ""]);
  $("trend-table").replaceChildren(table(["Test", "Date", "As reported", "Charted", "Status", "Why", "Range"], rows));
}

async function downloadSvg() {
  if (!state.view) return;
  const svg = await state.view.toSVG();
  const link = el("a", { href: URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" })), download: "trend.svg" });
  document.body.append(link);
  link.click();
  link.remove();
}

// --- a report a card linked to ----------------------------------------------------------------------
async function showReport(token) {
  $("try").hidden = true;
  const response = await fetch(`/ui/reports/${encodeURIComponent(token)}/trend?width=${chartWidth()}`);
  const { json, text } = await readJson(response);
  if (!response.ok) {
    $("trend-summary").textContent = outcomeText(json, text).join(" ");
    return;
  }
  await showTrends(json.patients || []);
}

async function copyBlock(event) {
  const target = $(event.currentTarget.dataset.copy);
  await navigator.clipboard?.writeText(target.textContent);
}

async function start() {
  $("input-form").addEventListener("submit", run);
  $("fixture").addEventListener("change", chooseFixture);
  $("bundle-file").addEventListener("change", readUpload);
  $("trend-patient").addEventListener("change", (e) => drawTrend(Number(e.target.value)));
  $("download-svg").addEventListener("click", downloadSvg);
  for (const button of document.querySelectorAll("button.copy")) button.addEventListener("click", copyBlock);
  const report = location.pathname.match(/^\/ui\/reports\/([^/]+)$/);
  if (report) { await showReport(report[1]); document.body.dataset.ready = "true"; return; }
  await Promise.all([loadSettings(), loadFixtures()]);
  document.body.dataset.ready = "true";
}

start().catch((error) => showError("The page could not start:", [String(error)]));
