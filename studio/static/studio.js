// augkit studio: the page. Plain ES2020, no framework, no build step, nothing from the network
// but the studio server's own /api (studio/app.py lists the routes, studio/session.py answers them).
//
// The model is `studio.state`, the pipeline being edited: {seed, compile, steps: [{name,
// params, raw, enabled}]}. The DOM is drawn from it (renderSteps) and controls write back into
// it, then call scheduleUpdate(), which keeps at most one POST /api/sheet in flight and sends the
// latest state once it returns, so a dragged slider never queues stale requests.
"use strict";

const TYPING_PAUSE_MS = 300; // a typed field is sent this long after the last keystroke (or on Enter/blur)
const FOLD_AFTER = 6; // a card with more parameters than this shows p and the set ones until "more"

const studio = {
  version: 0, // +1 each time a new sheet is shown; #sheet's data-version once it has loaded
  lastUpdateMs: null, // from the change to the sheet's load, in milliseconds
  state: {seed: 0, compile: true, steps: []},
  options: {n: 6, rows: 4, epoch: 0, sample_seed: 0, stages: null},
};
window.studio = studio;

const schemas = new Map(); // step name -> GET /api/steps/<name> (or {error}) once loaded
const schemaRequests = new Map(); // step name -> its pending request, so a name is fetched once
const folds = new WeakMap(); // step object -> true when its card is unfolded (kept across re-renders)
let lastErrors = {errors: [], indices: []}; // the last 422's errors, placed again after each render
let stageSources = []; // the rows of the last sheet: what the stages view can follow

const $ = (selector, root = document) => root.querySelector(selector);

// ----------------------------------------------------------------------------- small helpers

/** An element with attributes (on* as listeners; false/null/undefined left out) and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/** JSON text with BigInt (a seed past 2**53) written as a bare integer, which JSON.stringify refuses. */
function toJSON(value) {
  const big = [];
  const text = JSON.stringify(value, (key, v) => (typeof v === "bigint" ? `\u0000big${big.push(String(v)) - 1}` : v));
  return text.replace(/"\\u0000big(\d+)"/g, (match, i) => big[Number(i)]);
}

/** JSON.parse keeping a "seed" past 2**53 exact (as BigInt) where the browser gives the source text. */
function parseJSON(text) {
  return JSON.parse(text, (key, value, context) => {
    const exact = key === "seed" && typeof value === "number" && !Number.isSafeInteger(value);
    return exact && context && /^\d+$/.test(context.source) ? BigInt(context.source) : value;
  });
}

class Unreachable extends Error {}

/** GET (no body) or POST JSON to the studio server: {status, data}; Unreachable when it does not answer. */
async function api(path, body) {
  const init = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"}, body: toJSON(body)};
  let response, text;
  try {
    response = await fetch(path, init);
    text = await response.text();
  } catch (error) {
    throw new Unreachable(`cannot reach the server (${error.message}): is augkit studio still running?`);
  }
  try {
    return {status: response.status, data: parseJSON(text)};
  } catch (error) {
    return {status: response.status, data: {ok: false, errors: [{message: `the server answered ${response.status} without JSON`}]}};
  }
}

/** A YAML flow-style rendering of a JSON value (what a text control shows and sends back as raw). */
function toFlow(value) {
  if (value === null || value === undefined) return "null";
  if (Array.isArray(value)) return `[${value.map(toFlow).join(", ")}]`;
  if (typeof value === "object") return `{${Object.entries(value).map(([k, v]) => `${toFlow(k)}: ${toFlow(v)}`).join(", ")}}`;
  if (typeof value === "number") return String(value).replace(/^(-?\d+)e/, "$1.0e"); // YAML 1.1 reads 1e-7 as a string, 1.0e-7 as a number
  if (typeof value !== "string") return String(value);
  // A plain scalar only where YAML would read the same string back; else JSON's quoting (valid YAML).
  const plain = /^[A-Za-z_][\w./-]*( [\w./-]+)*$/.test(value) && !/^(true|false|null|yes|no|on|off|y|n)$/i.test(value);
  return plain ? value : JSON.stringify(value);
}

/** A typed number: null for an empty or unreadable field (left for the user to finish). */
function typedNumber(text) {
  if (text.trim() === "") return null;
  const number = Number(text);
  return Number.isNaN(number) ? null : number;
}

/** Shows `value` in a typed input without it counting as the user's next edit. */
function show(input, value) {
  input.value = value === null || value === undefined ? "" : String(value);
  input.committed = input.value;
}

/** Calls commit(text) on change, Enter, or TYPING_PAUSE_MS after typing stops; never twice for one text. */
function onTyped(input, commit) {
  let timer = null;
  input.committed = input.value;
  const fire = () => {
    clearTimeout(timer);
    if (input.value === input.committed) return;
    input.committed = input.value;
    commit(input.value);
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(fire, TYPING_PAUSE_MS);
  });
  input.addEventListener("change", fire);
  input.addEventListener("keydown", (event) => event.key === "Enter" && fire());
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (error) {
    return false; // no clipboard permission (or not a secure context): the caller shows the text instead
  }
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

// ----------------------------------------------------------------------------- the sheet

const loop = {inFlight: false, pending: false, changedAt: 0, shown: null};

/** Note a change; send it now, or when the request in flight returns (coalesced: latest state wins). */
function scheduleUpdate() {
  loop.changedAt = performance.now();
  loop.pending = true;
  if (!loop.inFlight) {
    loop.inFlight = true;
    queueMicrotask(sendSheet); // changes made in the same event go out as one request
  }
}

/** The pipeline as the server takes it: enabled steps only, and which card each sent index is. */
function pipelineToSend() {
  const steps = [];
  const indices = [];
  studio.state.steps.forEach((step, i) => {
    if (!step.enabled) return;
    steps.push({name: step.name, params: step.params, raw: step.raw});
    indices.push(i);
  });
  return {pipeline: {seed: studio.state.seed, compile: studio.state.compile, steps}, indices};
}

async function sendSheet() {
  loop.pending = false;
  const changedAt = loop.changedAt;
  const {pipeline, indices} = pipelineToSend();
  const {n, rows, epoch, sample_seed, stages} = studio.options;
  setStatus("rendering…", "busy");
  try {
    const {status, data} = await api("api/sheet", {pipeline, n, rows, epoch, sample_seed, stages});
    if (data.ok) showSheet(data, changedAt);
    else showSheetErrors(data.errors || [], indices, status);
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
    $("#sheet").classList.add("stale"); // it no longer shows the pipeline on the left
    setStatus(error.message, "error");
  } finally {
    if (loop.pending) sendSheet();
    else loop.inFlight = false;
  }
}

function showSheet(data, changedAt) {
  placeErrors([], []);
  const sheet = $("#sheet");
  sheet.classList.remove("stale");
  loop.shown = {changedAt, ms: data.ms};
  sheet.src = data.png; // the load listener (start) counts the version and times it
  $("#command").textContent = data.command || ""; // null for the stages view: no command writes it
  showWarnings(data.warnings || []);
  setStageSources(data.sources || []);
}

/** augkit's warnings (a file passed over): above the sheet, apart from the errors. */
function showWarnings(warnings) {
  $("#sheet-warnings").replaceChildren(...warnings.map((warning) => el("li", {}, warning)));
}

function onSheetLoaded() {
  const sheet = $("#sheet");
  studio.version += 1;
  studio.lastUpdateMs = Math.round(performance.now() - loop.shown.changedAt);
  sheet.dataset.version = String(studio.version);
  setStatus(`updated in ${studio.lastUpdateMs} ms (server ${loop.shown.ms} ms)${loop.inFlight ? " · rendering…" : ""}`, "");
}

function showSheetErrors(errors, indices, status) {
  placeErrors(errors, indices);
  $("#sheet").classList.add("stale"); // the last good sheet stays, dimmed, so the user keeps their bearings
  const internal = status >= 500 ? " (a server error)" : "";
  const kept = $("#sheet").getAttribute("src") ? ": showing the last good sheet" : "";
  setStatus(`${plural(errors.length, "error")}${internal}${kept}`, "error");
}

function setStatus(text, kind) {
  const status = $("#status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

/** The stages view's image choices: the rows of the sheet (every answer lists all of them). */
function setStageSources(sources) {
  const select = $("#stage-image");
  const same = sources.length === stageSources.length && sources.every((s, i) => s.label === stageSources[i].label);
  if (same) return;
  stageSources = sources;
  const keep = Math.min(Number(select.value) || 0, Math.max(sources.length - 1, 0));
  select.replaceChildren(...sources.map((source, i) => el("option", {value: i}, `${i + 1}. ${source.label}`)));
  select.value = String(keep);
}

// ----------------------------------------------------------------------------- errors

/** Put each error by its control (key), at the top of its card (key null), or above the sheet (step null). */
function placeErrors(errors, indices) {
  lastErrors = {errors, indices};
  for (const node of document.querySelectorAll(".param-error, .step-error")) node.textContent = "";
  for (const node of document.querySelectorAll(".has-error")) node.classList.remove("has-error");
  const above = $("#sheet-errors");
  above.replaceChildren();
  for (const error of errors) {
    const index = error.step === null || error.step === undefined ? undefined : indices[error.step];
    const card = index === undefined ? null : $(`#step-list .step[data-index="${index}"]`);
    const param = card && error.key ? $(`.param[data-param="${CSS.escape(error.key)}"]`, card) : null;
    if (param) {
      addMessage($(".param-error", param), error.message);
      param.classList.add("has-error"); // shown even in a folded card
      card.classList.add("has-error");
    } else if (card) {
      addMessage($(".step-error", card), error.message);
      card.classList.add("has-error");
    } else {
      above.append(el("li", {}, error.message));
    }
  }
}

function addMessage(node, message) {
  node.textContent = node.textContent ? `${node.textContent}\n${message}` : message;
}

// ----------------------------------------------------------------------------- step cards

function renderSteps() {
  const steps = studio.state.steps;
  $("#step-list").replaceChildren(...steps.map((step, i) => renderCard(step, i)));
  $("#empty-pipeline").hidden = steps.length > 0;
  placeErrors(lastErrors.errors, lastErrors.indices);
}

function renderCard(step, index) {
  const schema = schemas.get(step.name);
  const card = el("li", {class: "step", "data-index": index, "data-name": step.name});
  card.classList.toggle("disabled", !step.enabled);
  card.append(cardHeader(step, index, schema), el("p", {class: "step-error"}));
  if (!schema) {
    card.append(el("p", {class: "hint"}, "loading parameters…"));
    loadSchema(step.name).then(() => replaceCards(step.name));
  } else if (schema.error) {
    addMessage($(".step-error", card), schema.error);
  } else {
    card.append(paramList(step, schema, card));
  }
  enableDrag(card, index);
  return card;
}

function cardHeader(step, index, schema) {
  const last = studio.state.steps.length - 1;
  const summary = schema && schema.summary ? schema.summary : "";
  return el("div", {class: "step-head"},
    el("span", {class: "handle", title: "drag to reorder", "aria-hidden": "true"}, "⠿"),
    el("span", {class: "step-number"}, String(index + 1)),
    el("span", {class: "step-name", title: summary}, step.name),
    el("label", {class: "enabled", title: "a disabled step stays here but is not applied"},
      el("input", {type: "checkbox", class: "enabled", checked: step.enabled, onchange: (e) => setEnabled(step, e.target)}), "on"),
    el("button", {type: "button", class: "up", title: "move up", "aria-label": "move up", disabled: index === 0,
      onclick: () => moveStep(index, index - 1, ".up")}, "↑"),
    el("button", {type: "button", class: "down", title: "move down", "aria-label": "move down", disabled: index === last,
      onclick: () => moveStep(index, index + 1, ".down")}, "↓"),
    el("button", {type: "button", class: "remove", title: "remove this step", "aria-label": "remove", onclick: () => removeStep(index)}, "×"),
    summary && el("p", {class: "step-summary", title: summary}, summary));
}

/** Re-draw the cards of `name` that were waiting for its parameters. */
function replaceCards(name) {
  for (const card of document.querySelectorAll("#step-list .step")) {
    if (card.dataset.name !== name) continue;
    const index = Number(card.dataset.index);
    card.replaceWith(renderCard(studio.state.steps[index], index));
  }
  placeErrors(lastErrors.errors, lastErrors.indices);
}

function replaceCard(index) {
  $(`#step-list .step[data-index="${index}"]`).replaceWith(renderCard(studio.state.steps[index], index));
  placeErrors(lastErrors.errors, lastErrors.indices);
}

/** GET /api/steps/<name>, once per name; a failure is kept as {error} (a network failure is retried). */
function loadSchema(name) {
  if (!schemaRequests.has(name)) {
    const request = api(`api/steps/${encodeURIComponent(name)}`).then(
      ({data}) => schemas.set(name, data.parameters ? data : {error: (data.errors || [{message: "no parameters"}])[0].message}),
      (error) => {
        schemaRequests.delete(name);
        schemas.set(name, {error: error.message});
      });
    schemaRequests.set(name, request);
  }
  return schemaRequests.get(name);
}

function setEnabled(step, checkbox) {
  step.enabled = checkbox.checked;
  checkbox.closest(".step").classList.toggle("disabled", !step.enabled);
  scheduleUpdate();
}

function moveStep(from, to, focus) {
  const steps = studio.state.steps;
  if (to < 0 || to >= steps.length || to === from) return;
  steps.splice(to, 0, ...steps.splice(from, 1));
  lastErrors = {errors: [], indices: []}; // they point at old positions; the next answer brings new ones
  renderSteps();
  if (focus) $(`#step-list .step[data-index="${to}"] ${focus}`).focus(); // keyboard users keep their place
  scheduleUpdate();
}

function removeStep(index) {
  studio.state.steps.splice(index, 1);
  lastErrors = {errors: [], indices: []};
  renderSteps();
  scheduleUpdate();
}

function addStep(name) {
  studio.state.steps.push({name, params: {}, raw: {}, enabled: true});
  renderSteps();
  $("#step-list .step:last-child").scrollIntoView({block: "nearest"});
  scheduleUpdate();
}

// ----------------------------------------------------------------------------- drag and drop

const drag = {from: null};

/** HTML5 drag and drop from the handle only (a draggable card would steal slider drags and text
 * selection); the whole card is the drag image. */
function enableDrag(card, index) {
  const handle = $(".handle", card);
  handle.draggable = true;
  handle.addEventListener("dragstart", (event) => {
    drag.from = index;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", String(index));
    event.dataTransfer.setDragImage(card, 16, 16);
    card.classList.add("dragging");
  });
  handle.addEventListener("dragend", () => {
    card.classList.remove("dragging");
    clearDropMarks();
    drag.from = null;
  });
}

function dropPlace(event) {
  const card = event.target.closest && event.target.closest(".step");
  if (!card || drag.from === null) return null;
  const box = card.getBoundingClientRect();
  return {card, after: event.clientY > box.top + box.height / 2};
}

function clearDropMarks() {
  for (const card of document.querySelectorAll(".drop-before, .drop-after")) card.classList.remove("drop-before", "drop-after");
}

function onDragOver(event) {
  const place = dropPlace(event);
  if (!place) return;
  event.preventDefault(); // allows the drop
  clearDropMarks();
  place.card.classList.add(place.after ? "drop-after" : "drop-before");
}

function onDrop(event) {
  const place = dropPlace(event);
  if (!place) return;
  event.preventDefault();
  const from = drag.from;
  let to = Number(place.card.dataset.index) + (place.after ? 1 : 0);
  if (from < to) to -= 1; // the card leaves its old place first
  clearDropMarks();
  moveStep(from, to);
}

// ----------------------------------------------------------------------------- parameters

/** The parameter controls of a card; a long list folds to p and the set ones ("more" unfolds). */
function paramList(step, schema, card) {
  const list = el("div", {class: "params"});
  for (const info of schema.parameters) {
    const param = paramControl(step, info, card);
    if (info.name !== "p") param.classList.add("extra");
    list.append(param);
  }
  const count = schema.parameters.length;
  if (count > FOLD_AFTER) {
    card.classList.add("foldable");
    card.classList.toggle("open", Boolean(folds.get(step)));
    const toggle = el("button", {type: "button", class: "more"});
    const label = () => { toggle.textContent = card.classList.contains("open") ? "show fewer" : `more: all ${count} parameters`; };
    toggle.addEventListener("click", () => {
      folds.set(step, card.classList.toggle("open"));
      label();
    });
    label();
    list.append(toggle);
  }
  return list;
}

function isSet(step, key) {
  return key in step.params || key in step.raw;
}

function paramControl(step, info, card) {
  const key = info.name;
  const value = key in step.params ? step.params[key] : info.default;
  const kind = key in step.raw ? "text" : controlKind(info, value);
  const param = el("div", {class: "param", "data-param": key, "data-control": kind});
  param.classList.toggle("set", isSet(step, key));
  const edited = () => {
    param.classList.add("set");
    if (step.enabled) scheduleUpdate();
  };
  const commit = (v) => {
    step.params[key] = v;
    delete step.raw[key];
    edited();
  };
  const commitRaw = (text) => {
    step.raw[key] = text;
    delete step.params[key];
    edited();
  };
  const defaultText = info.required ? "required" : `default ${toFlow(info.default)}`;
  const about = [info.type, info.bounds, defaultText].filter(Boolean).join("; ");
  const control = key in step.raw ? textControl(step.raw[key], commitRaw) : CONTROLS[kind](info, value, commit, commitRaw);
  param.append(
    el("div", {class: "param-label"}, el("span", {class: "param-name", title: `${key}: ${about}`}, breakable(key)), control.rangeToggle),
    el("div", {class: "param-control"}, control),
    el("button", {type: "button", class: "reset", title: `reset to the default (${defaultText})`, "aria-label": `reset ${key}`,
      onclick: () => resetParam(step, key, card)}, "↺"),
    el("p", {class: "param-error"}), // right under the control, above the meaning
    info.meaning ? el("p", {class: "param-meaning", title: info.meaning}, info.meaning) : null);
  return param;
}

/** A parameter name that wraps after its underscores ("translate_/percent"), not mid-word. */
function breakable(name) {
  return name.split("_").flatMap((part, i, parts) => (i < parts.length - 1 ? [`${part}_`, el("wbr")] : [part]));
}

function resetParam(step, key, card) {
  delete step.params[key];
  delete step.raw[key];
  replaceCard(Number(card.dataset.index));
  if (step.enabled) scheduleUpdate();
}

/** The contract's control for a parameter, or "text" when the value does not fit it (e.g. a list where a number goes). */
function controlKind(info, value) {
  const unset = value === null || value === undefined;
  const isNumber = typeof value === "number";
  const isPair = Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === "number");
  const fits = {
    checkbox: unset || typeof value === "boolean",
    select: true,
    slider: unset || isNumber,
    number: unset || isNumber,
    range: unset || isPair || (isNumber && info.scalar),
    text: true,
  };
  return fits[info.control] ? info.control : "text";
}

const CONTROLS = {
  checkbox: (info, value, commit) =>
    el("input", {type: "checkbox", checked: value === true, onchange: (e) => commit(e.target.checked)}),
  select: selectControl,
  slider: (info, value, commit) => sliderPair(info, value, commit),
  range: rangeControl,
  number: numberControl,
  text: (info, value, commit, commitRaw) => textControl(toFlow(value === undefined ? null : value), commitRaw),
};

/** Choices shown by label (OpenCV flags: "1 (INTER_LINEAR)"), sent by value. */
function selectControl(info, value, commit) {
  const labels = info.choice_labels || info.choices.map(String);
  const select = el("select", {}, info.choices.map((choice, i) => el("option", {value: i}, labels[i])));
  const current = info.choices.findIndex((choice) => choice === value);
  if (current < 0) select.prepend(el("option", {value: "", disabled: true}, toFlow(value))); // unset and no default
  select.value = current < 0 ? "" : String(current);
  select.addEventListener("change", () => commit(info.choices[Number(select.value)]));
  return select;
}

/** A range input and a number input side by side; the number takes values outside the bounds
 * too, so the user sees the server's message rather than a silent clamp. */
function sliderPair(info, value, commit) {
  const range = el("input", {type: "range", min: info.low, max: info.high, step: info.step || "any"});
  const number = el("input", {type: "number", step: info.integer ? 1 : "any", class: "number"});
  range.value = value === null || value === undefined ? (info.low + info.high) / 2 : value;
  show(number, value);
  range.addEventListener("input", () => {
    show(number, range.value);
    commit(Number(range.value));
  });
  onTyped(number, (text) => {
    const typed = typedNumber(text);
    if (typed === null) return;
    range.value = typed;
    commit(typed);
  });
  return el("span", {class: "slider"}, range, number);
}

/** A pair [a, b] as two sliders, or (scalar allowed) one number v; "as range" switches between
 * them: v -> [min(-v, v), max(-v, v)] within the bounds, [a, b] -> max(|a|, |b|). */
function rangeControl(info, value, commit) {
  const wrap = el("span", {class: "range"});
  const clamp = (v) => Math.min(info.high, Math.max(info.low, v));
  let current = value === null || value === undefined ? [info.low, info.high] : value;
  const draw = () => {
    const pair = Array.isArray(current);
    const rows = pair
      ? current.map((end, i) => sliderPair(info, end, (v) => {
        current = current.map((old, j) => (j === i ? v : old));
        commit(current);
      }))
      : [sliderPair(info, current, (v) => { current = v; commit(v); })];
    const toggle = info.scalar && el("label", {class: "as-range", title: "a pair [a, b] (checked), or one number v for (-v, v)"},
      el("input", {type: "checkbox", class: "as-range", checked: pair, onchange: () => {
        current = pair ? Math.max(...current.map(Math.abs)) : [clamp(Math.min(-current, current)), clamp(Math.max(-current, current))];
        commit(current);
        draw();
      }}), "as range");
    wrap.replaceChildren(...rows);
    if (toggle) wrap.rangeToggle.replaceChildren(toggle);
  };
  wrap.rangeToggle = el("span", {class: "toggle"}); // paramControl shows it under the parameter's name
  draw();
  return wrap;
}

function numberControl(info, value, commit) {
  const number = el("input", {type: "number", step: info.integer ? 1 : "any", class: "number wide"});
  show(number, value);
  onTyped(number, (text) => {
    const typed = typedNumber(text);
    if (typed !== null) commit(typed);
  });
  return number;
}

/** YAML flow text (lists, mappings, null, nested steps), sent as raw for the server to parse. */
function textControl(text, commitRaw) {
  const input = el("input", {type: "text", class: "text", spellcheck: "false", value: text});
  onTyped(input, commitRaw);
  return input;
}

// ----------------------------------------------------------------------------- add step

const finder = {steps: [], shown: [], active: 0};

/** Steps matching the query: name prefix first, then name, then summary; augkit's before albumentations' (the server's order). */
function matchSteps(query) {
  const q = query.trim().toLowerCase();
  const rank = (step) => {
    const name = step.name.toLowerCase();
    if (name.startsWith(q)) return 0;
    if (name.includes(q)) return 1;
    return (step.summary || "").toLowerCase().includes(q) ? 2 : 3;
  };
  return finder.steps
    .map((step, order) => ({step, order, rank: rank(step)}))
    .filter((match) => match.rank < 3)
    .sort((a, b) => a.rank - b.rank || a.order - b.order)
    .map((match) => match.step);
}

function showResults() {
  const input = $("#add-step");
  const list = $("#add-results");
  finder.shown = matchSteps(input.value);
  finder.active = Math.min(finder.active, Math.max(finder.shown.length - 1, 0));
  list.replaceChildren(...finder.shown.map((step, i) => el("li", {
    role: "option", id: `add-option-${i}`, class: i === finder.active ? "active" : "", "data-name": step.name,
    "aria-selected": i === finder.active ? "true" : "false",
    onmousedown: (event) => event.preventDefault(), // keep the focus in the search box
    onclick: () => pickStep(step.name),
  }, el("span", {class: "result-name"}, step.name), el("span", {class: "result-summary"}, step.summary || ""))));
  if (!finder.shown.length) list.append(el("li", {class: "none"}, "no step matches"));
  list.hidden = false;
  input.setAttribute("aria-expanded", "true");
  input.setAttribute("aria-activedescendant", finder.shown.length ? `add-option-${finder.active}` : "");
  const active = $("li.active", list);
  if (active) active.scrollIntoView({block: "nearest"});
}

function hideResults() {
  $("#add-results").hidden = true;
  $("#add-step").setAttribute("aria-expanded", "false");
}

function pickStep(name) {
  addStep(name);
  $("#add-step").value = "";
  finder.active = 0;
  hideResults();
}

function onFinderKey(event) {
  const moves = {ArrowDown: 1, ArrowUp: -1};
  if (event.key in moves) {
    event.preventDefault();
    if ($("#add-results").hidden) return showResults();
    const count = finder.shown.length;
    finder.active = count ? (finder.active + moves[event.key] + count) % count : 0;
    showResults();
  } else if (event.key === "Enter") {
    event.preventDefault();
    if (finder.shown.length && !$("#add-results").hidden) pickStep(finder.shown[finder.active].name);
  } else if (event.key === "Escape") {
    hideResults();
  }
}

function setUpFinder() {
  const input = $("#add-step");
  input.addEventListener("input", () => { finder.active = 0; showResults(); });
  input.addEventListener("focus", showResults);
  input.addEventListener("blur", hideResults);
  input.addEventListener("keydown", onFinderKey);
}

// ----------------------------------------------------------------------------- export, import

function ioMessage(text, kind = "") {
  const message = $("#io-message");
  message.textContent = text;
  message.className = `io-message ${kind}`;
}

/** POST /api/export for the current pipeline; its errors go where the sheet's go. */
async function exportSpec() {
  const {pipeline, indices} = pipelineToSend();
  try {
    const {data} = await api("api/export", {pipeline});
    if (data.ok) return data;
    placeErrors(data.errors || [], indices);
    ioMessage(`cannot export: ${plural((data.errors || []).length, "error")}, marked in the pipeline`, "error");
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
    ioMessage(error.message, "error");
  }
  return null;
}

async function downloadYaml() {
  const data = await exportSpec();
  if (!data) return;
  const url = URL.createObjectURL(new Blob([data.yaml], {type: "application/yaml"}));
  const link = el("a", {href: url, download: data.filename || "pipeline.yaml", hidden: true});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000); // revoking at once can cancel the download
  ioMessage(`saved ${data.filename || "pipeline.yaml"}: augkit preview -p ${data.filename || "pipeline.yaml"}`);
}

async function copyInline() {
  const data = await exportSpec();
  if (!data) return;
  const copied = await copyText(data.inline);
  ioMessage(copied ? `copied: ${data.inline}` : `copy this by hand: ${data.inline}`);
}

async function copyCommand(button) {
  const copied = await copyText($("#command").textContent);
  button.textContent = copied ? "Copied" : "Select it";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

/** POST /api/import; on success the spec replaces the pipeline (and its seed). */
async function importSpec(text, name) {
  let answer;
  try {
    answer = await api("api/import", name ? {text, name} : {text});
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
    return ioMessage(error.message, "error");
  }
  const {data} = answer;
  if (!data.ok) return ioMessage((data.errors || []).map((e) => e.message).join("\n") || "cannot import", "error");
  setPipeline(data);
  const warnings = (data.warnings || []).map((warning) => `\n${warning}`).join("");
  ioMessage(`imported ${plural(data.steps.length, "step")}${name ? ` from ${name}` : ""}${warnings}`);
  return scheduleUpdate();
}

async function importFile(input) {
  const file = input.files[0];
  if (!file) return;
  await importSpec(await file.text(), file.name);
  input.value = ""; // the same file can be imported again after edits
}

// ----------------------------------------------------------------------------- header options

/** A seed as typed: exact integers past 2**53 as BigInt; anything else as a number for the server to judge. */
function typedSeed(text) {
  if (/^\d+$/.test(text.trim())) {
    const big = BigInt(text.trim());
    return big > BigInt(Number.MAX_SAFE_INTEGER) ? big : Number(big);
  }
  return typedNumber(text);
}

function setUpOptions() {
  const bind = (id, apply) => onTyped($(id), (text) => {
    const value = id === "#seed" ? typedSeed(text) : typedNumber(text);
    if (value === null) return;
    apply(value);
    scheduleUpdate();
  });
  bind("#seed", (v) => { studio.state.seed = v; });
  bind("#epoch", (v) => { studio.options.epoch = v; });
  bind("#variants", (v) => { studio.options.n = v; });
  bind("#rows", (v) => { studio.options.rows = v; });
  $("#new-sample").addEventListener("click", () => {
    studio.options.sample_seed += 1;
    $("#new-sample").title = `sample other images from the datasets (sample seed ${studio.options.sample_seed})`;
    scheduleUpdate();
  });
  $("#view").addEventListener("change", onViewChange);
  $("#stage-image").addEventListener("change", onViewChange);
}

function onViewChange() {
  const stages = $("#view").value === "stages";
  $("#stage-image").disabled = !stages;
  studio.options.stages = stages ? Number($("#stage-image").value) || 0 : null;
  scheduleUpdate();
}

function showOptions(state) {
  const {options, limits} = state;
  show($("#seed"), state.seed);
  show($("#epoch"), options.epoch);
  show($("#variants"), options.n);
  show($("#rows"), options.rows);
  for (const [id, key] of [["#epoch", "epoch"], ["#variants", "n"], ["#rows", "rows"], ["#seed", "seed"]]) {
    if (limits && limits[key]) $(id).max = String(limits[key][1]);
  }
  $("#new-sample").disabled = !state.can_resample;
  const inputs = (state.inputs || []).join(", ");
  $("#inputs").textContent = inputs;
  $("#inputs").title = inputs;
}

/** The pipeline from /api/state or /api/import, every step enabled. */
function setPipeline(spec) {
  studio.state = {
    seed: spec.seed,
    compile: spec.compile !== false,
    steps: spec.steps.map((step) => ({name: step.name, params: {...step.params}, raw: {}, enabled: true})),
  };
  show($("#seed"), spec.seed);
  lastErrors = {errors: [], indices: []};
  renderSteps();
}

// ----------------------------------------------------------------------------- start

async function start() {
  $("#sheet").addEventListener("load", onSheetLoaded);
  setUpOptions();
  setUpFinder();
  const list = $("#step-list");
  list.addEventListener("dragover", onDragOver);
  list.addEventListener("drop", onDrop);
  $("#export").addEventListener("click", downloadYaml);
  $("#copy-inline").addEventListener("click", copyInline);
  $("#copy-command").addEventListener("click", (event) => copyCommand(event.target));
  $("#import-file").addEventListener("change", (event) => importFile(event.target));
  $("#import-button").addEventListener("click", () => importSpec($("#import-text").value));
  $("#import-text").addEventListener("keydown", (event) => event.key === "Enter" && importSpec($("#import-text").value));
  try {
    const [{data: state}, {data: catalogue}] = await Promise.all([api("api/state"), api("api/steps")]);
    finder.steps = catalogue.steps || [];
    Object.assign(studio.options, {...state.options, stages: null});
    showOptions(state);
    setPipeline(state);
    scheduleUpdate();
  } catch (error) {
    if (!(error instanceof Unreachable)) throw error;
    setStatus(error.message, "error");
  }
}

start();
