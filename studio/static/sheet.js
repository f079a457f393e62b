// The right pane: POST /api/sheet with the latest state (one request in flight), the sheet it
// answers, the status line, the "fit" toggle, and the server's errors placed where they belong.

import {$, el, plural} from "./dom.js";
import {Unreachable, api, latestOnly} from "./api.js";
import {studio, pipelineToSend} from "./state.js";

const runner = latestOnly(sendSheet);
const timing = {changedAt: 0, shown: null}; // when the latest change was made; the answer being loaded
let lastErrors = {errors: [], indices: []}; // the last 422's errors, placed again after each re-render
let stageSources = []; // the rows of the last sheet: what the stages view can follow

/** Note a change; the sheet for it is requested now, or when the request in flight returns. */
export function scheduleUpdate() {
  timing.changedAt = performance.now();
  runner.schedule();
}

async function sendSheet() {
  const changedAt = timing.changedAt;
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
  }
}

function showSheet(data, changedAt) {
  placeErrors([], []);
  const sheet = $("#sheet");
  sheet.classList.remove("stale");
  timing.shown = {changedAt, ms: data.ms};
  sheet.src = data.png; // onSheetLoaded counts the version and times it
  $("#command").textContent = data.command || ""; // null for the stages view: no command writes it
  $("#sheet-warnings").replaceChildren(...(data.warnings || []).map((warning) => el("li", {}, warning)));
  setStageSources(data.sources || []);
}

function onSheetLoaded() {
  const sheet = $("#sheet");
  studio.version += 1;
  studio.lastUpdateMs = Math.round(performance.now() - timing.shown.changedAt);
  sheet.dataset.version = String(studio.version);
  showScale();
  setStatus(`updated in ${studio.lastUpdateMs} ms (server ${timing.shown.ms} ms)${runner.inFlight ? " · rendering…" : ""}`, "");
}

function showSheetErrors(errors, indices, status) {
  placeErrors(errors, indices);
  $("#sheet").classList.add("stale"); // the last good sheet stays, dimmed, so the user keeps their bearings
  const internal = status >= 500 ? " (a server error)" : "";
  const kept = $("#sheet").getAttribute("src") ? ": showing the last good sheet" : "";
  setStatus(`${plural(errors.length, "error")}${internal}${kept}`, "error");
}

export function setStatus(text, kind) {
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

// ----------------------------------------------------------------------------- fit

/** "fit" shrinks a sheet wider than the pane to its width (CSS: max-width 100%); its captions shrink
 * with it, so the label says by how much ("fit: 69%"). */
function showScale() {
  const sheet = $("#sheet");
  const scale = $("#fit").checked && sheet.naturalWidth ? sheet.clientWidth / sheet.naturalWidth : 1;
  $("#fit-scale").textContent = scale < 1 ? `: ${Math.round(scale * 100)}%` : "";
}

function applyFit() {
  $(".sheet-frame").classList.toggle("fit", $("#fit").checked);
  showScale();
}

export function setUpSheet() {
  const sheet = $("#sheet");
  sheet.addEventListener("load", onSheetLoaded);
  $("#fit").addEventListener("change", applyFit);
  applyFit(); // a reload may have restored the checkbox unchecked
  // A resized window changes a fitted sheet's width, and so its scale.
  new ResizeObserver(showScale).observe(sheet);
}

// ----------------------------------------------------------------------------- errors

/** Put each error by its control (key), at the top of its card (key null), or above the sheet (step null). */
export function placeErrors(errors, indices) {
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

/** The last errors again, on cards just drawn anew. */
export function placeLastErrors() {
  placeErrors(lastErrors.errors, lastErrors.indices);
}

/** After a move or a removal the last errors point at old positions; the next answer brings new ones. */
export function forgetErrors() {
  lastErrors = {errors: [], indices: []};
}

export function addMessage(node, message) {
  node.textContent = node.textContent ? `${node.textContent}\n${message}` : message;
}
