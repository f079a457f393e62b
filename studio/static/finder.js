// "Add step…": a search over GET /api/steps (name and summary), keyboard navigable (arrows, Enter,
// Escape), a click or Enter adds the step at the end of the pipeline.

import {$, el} from "./dom.js";
import {addStep} from "./steps.js";

const finder = {steps: [], shown: [], active: 0}; // the catalogue, the matches shown, the highlighted one

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
    "aria-selected": i === finder.active ? "true" : "false", title: step.summary || null,
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
    event.preventDefault(); // a search box's own Escape clears it, and that "input" would open the list again
    hideResults();
  }
}

/** The steps to search: GET /api/steps's list, augkit's steps first. */
export function setCatalogue(steps) {
  finder.steps = steps;
}

export function setUpFinder() {
  const input = $("#add-step");
  input.addEventListener("input", () => { finder.active = 0; showResults(); });
  input.addEventListener("focus", showResults);
  input.addEventListener("blur", hideResults);
  input.addEventListener("keydown", onFinderKey);
}
