// The browse page: look a page up by URL and show its content, walk neighbours, top pins and the
// latest evaluation's score histogram. Data only ever goes into the page as text (no innerHTML).
"use strict";

const $ = (id) => document.getElementById(id);
const LINKED_SHOWN = 16; // pins listed under "Pins linking to this page" (all of them mark the top pins)

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function getJSON(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(query ? `${path}?${query}` : path);
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new ApiError(response.status, body.error || response.statusText);
  return body;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function setState(state) {
  document.body.dataset.state = state;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function browseLink(url) {
  const link = el("a", { href: `/browse?url=${encodeURIComponent(url)}`, title: url, text: url });
  link.addEventListener("click", (event) => {
    event.preventDefault();
    lookUp(url);
  });
  return link;
}

// a bar of value / max behind the number (visits: relative to the page's top neighbour; cosines: to 1)
function barCell(value, max, text) {
  const width = max > 0 ? Math.max(2, (100 * value) / max) : 0;
  return el("td", { class: "num" }, el("div", { class: "bar", style: `width:${width}%` }), el("span", { text }));
}

function renderPage(detail) {
  const content = detail.content || {};
  $("page-link").textContent = detail.url;
  $("page-link").href = detail.url;
  $("page-title").textContent = content.title || "(no crawled title)";
  $("page-description").textContent = content.description || "";
  $("page-body").textContent = content.body || (detail.content ? "" : "This page is in the store but not in the run's tables.");
  const meta = $("page-meta");
  meta.replaceChildren();
  const facts = [
    ["domain", content.domain || "–"],
    ["embedded on", detail.day || "–"],
    ["store version", detail.store_version ?? "–"],
    ["model", detail.model_version || "–"],
    ["first seen", content.first_seen ? new Date(content.first_seen * 1000).toISOString().slice(0, 10) : "–"],
    ["in store / run", `${detail.in_store ? "yes" : "no"} / ${detail.in_run ? "yes" : "no"}`],
  ];
  for (const [name, value] of facts) meta.append(el("dt", { text: name }), el("dd", { text: String(value) }));
}

function renderNeighbours(detail) {
  const body = $("neighbours").tBodies[0];
  body.replaceChildren();
  const max = Math.max(0, ...detail.neighbours.map((n) => n.visits));
  for (const n of detail.neighbours) {
    body.append(el("tr", {}, el("td", { text: String(n.rank) }), el("td", {}, browseLink(n.url)), barCell(n.visits, max, n.visits.toFixed(0))));
  }
  $("neighbours-empty").hidden = detail.neighbours.length > 0;
}

function renderPins(result, detail) {
  const body = $("pins").tBodies[0];
  body.replaceChildren();
  const empty = $("pins-empty");
  if (result instanceof Error) {
    empty.textContent = result.message;
    empty.hidden = false;
    return;
  }
  const linked = new Set(detail.linked_pins.map((p) => p.pin_id));
  for (const p of result.pins) {
    const text = el("td", { title: p.text, text: p.text || "(no text)" });
    const id = el("td", { class: "pin-id", title: p.pin_id, text: p.pin_id });
    body.append(el("tr", { class: linked.has(p.pin_id) ? "linked" : "" }, el("td", { text: String(p.rank) }), barCell(Math.max(0, p.score), 1, p.score.toFixed(3)), text, id));
  }
  empty.textContent = "No pins found.";
  empty.hidden = result.pins.length > 0;
}

function renderLinked(detail) {
  const list = $("linked-pins");
  list.replaceChildren();
  const shown = detail.linked_pins.slice(0, LINKED_SHOWN);
  for (const p of shown) list.append(el("li", { title: `${p.pin_id}: ${p.text}`, text: p.text || p.pin_id }));
  const total = detail.linked_pins_total;
  $("linked-count").textContent = shown.length < total ? `(${shown.length} of ${total})` : `(${total})`;
  $("linked-card").hidden = detail.linked_pins_total === 0;
}

async function lookUp(url) {
  if (!url) return;
  setState("loading");
  showError("");
  try {
    const [detail, pins] = await Promise.all([
      getJSON("/v1/pages/detail", { url, neighbours: 20, pins: 100 }),
      getJSON("/v1/pages/pins", { url, k: 20 }).catch((error) => error),
    ]);
    renderPage(detail);
    renderNeighbours(detail);
    renderPins(pins, detail);
    renderLinked(detail);
    $("url-input").value = detail.url;
    $("results").hidden = false;
    history.replaceState(null, "", `/browse?url=${encodeURIComponent(detail.url)}`);
    setState("ready");
  } catch (error) {
    $("results").hidden = true;
    showError(error.message);
    setState("error");
  }
}

async function loadStatus() {
  try {
    const h = await getJSON("/healthz");
    $("status").textContent = `store v${h.store_version} · ${h.pages.toLocaleString()} pages · dim ${h.dim} · model ${h.model_version || "–"}`;
  } catch (error) {
    $("status").textContent = error.message;
  }
}

async function loadExamples() {
  try {
    const sample = await getJSON("/v1/pages/sample", { n: 6 });
    $("examples").replaceChildren(...sample.urls.map((url) => browseLink(url)));
  } catch (error) {
    $("examples").replaceChildren();
  }
}

async function loadEvaluation() {
  try {
    const ev = await getJSON("/v1/evaluation");
    if (!ev.available) return;
    if (ev.histogram) $("histogram").src = ev.histogram;
    else $("histogram").hidden = true;
    const head = el("tr", {}, el("th", { text: "dim" }), ...ev.ks.map((k) => el("th", { class: "num", text: `R@${k}` })), el("th", { class: "num", text: "MRR" }));
    $("recall").tHead.replaceChildren(head);
    const rows = ev.dims.map((d) =>
      el("tr", {}, el("td", { text: String(d) }), ...ev.ks.map((k) => el("td", { class: "num", text: (ev.recall[`recall@${k}`][d] ?? NaN).toFixed(3) })), el("td", { class: "num", text: (ev.mrr[d] ?? NaN).toFixed(3) })),
    );
    $("recall").tBodies[0].replaceChildren(...rows);
    $("evaluation").hidden = false;
  } catch (error) {
    // no evaluation to show: the section stays hidden
  }
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  lookUp($("url-input").value.trim());
});

$("random-button").addEventListener("click", async () => {
  try {
    const sample = await getJSON("/v1/pages/sample", { n: 1 });
    lookUp(sample.urls[0]);
  } catch (error) {
    showError(error.message);
  }
});

loadStatus();
loadExamples();
loadEvaluation();
const initial = new URLSearchParams(location.search).get("url");
if (initial) lookUp(initial);
