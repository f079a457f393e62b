// The left pane's step cards: drawn from studio.state.steps, each with its parameters from
// GET /api/steps/<name>; enable, remove, and reorder (up/down buttons, or drag by the handle).

import {$, el, show} from "./dom.js";
import {api} from "./api.js";
import {studio} from "./state.js";
import {addMessage, forgetErrors, placeLastErrors, scheduleUpdate} from "./sheet.js";
import {paramList} from "./params.js";

const schemas = new Map(); // step name -> GET /api/steps/<name> (or {error}) once loaded
const schemaRequests = new Map(); // step name -> its pending request, so a name is fetched once

/** The pipeline from /api/state or /api/import, every step enabled. */
export function setPipeline(spec) {
  studio.state = {
    seed: spec.seed,
    compile: spec.compile !== false,
    targets: spec.targets || null, // boxes and keypoints as the spec declares them: kept as they are
    steps: spec.steps.map((step) => ({name: step.name, params: {...step.params}, raw: {}, enabled: true})),
  };
  show($("#seed"), spec.seed);
  forgetErrors();
  renderSteps();
}

function renderSteps() {
  const steps = studio.state.steps;
  $("#step-list").replaceChildren(...steps.map((step, i) => renderCard(step, i)));
  $("#empty-pipeline").hidden = steps.length > 0;
  placeLastErrors();
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
    card.append(paramList(step, schema, card, () => replaceCard(index)));
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
  placeLastErrors();
}

function replaceCard(index) {
  $(`#step-list .step[data-index="${index}"]`).replaceWith(renderCard(studio.state.steps[index], index));
  placeLastErrors();
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
  forgetErrors();
  renderSteps();
  if (focus) $(`#step-list .step[data-index="${to}"] ${focus}`).focus(); // keyboard users keep their place
  scheduleUpdate();
}

function removeStep(index) {
  studio.state.steps.splice(index, 1);
  forgetErrors();
  renderSteps();
  scheduleUpdate();
}

/** A step at the end of the pipeline, with no parameters set (all take their defaults). */
export function addStep(name) {
  studio.state.steps.push({name, params: {}, raw: {}, enabled: true});
  renderSteps();
  $("#step-list .step:last-child").scrollIntoView({block: "nearest"});
  scheduleUpdate();
}

// ----------------------------------------------------------------------------- drag and drop

const drag = {from: null}; // the index of the card being dragged

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

/** The list takes the drops (cards come and go; the list stays). */
export function setUpSteps() {
  const list = $("#step-list");
  list.addEventListener("dragover", onDragOver);
  list.addEventListener("drop", onDrop);
}
