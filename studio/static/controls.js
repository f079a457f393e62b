// One control per kind of parameter the server's schemas name (GET /api/steps/<name>: "control").
// Each takes the parameter's schema entry `info`, its value (set, or the default), and commit(value)
// (commitRaw(text) for YAML text the server parses), and returns the element to show.

import {el, onTyped, show, typedNumber} from "./dom.js";

/** A YAML flow-style rendering of a JSON value (what a text control shows and sends back as raw). */
export function toFlow(value) {
  if (value === null || value === undefined) return "null";
  if (Array.isArray(value)) return `[${value.map(toFlow).join(", ")}]`;
  if (typeof value === "object") return `{${Object.entries(value).map(([k, v]) => `${toFlow(k)}: ${toFlow(v)}`).join(", ")}}`;
  if (typeof value === "number") return String(value).replace(/^(-?\d+)e/, "$1.0e"); // YAML 1.1 reads 1e-7 as a string, 1.0e-7 as a number
  if (typeof value !== "string") return String(value);
  // A plain scalar only where YAML would read the same string back; else JSON's quoting (valid YAML).
  const plain = /^[A-Za-z_][\w./-]*( [\w./-]+)*$/.test(value) && !/^(true|false|null|yes|no|on|off|y|n)$/i.test(value);
  return plain ? value : JSON.stringify(value);
}

/** The contract's control for a parameter, or "text" when the value does not fit it (e.g. a list where a number goes). */
export function controlKind(info, value) {
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

export const CONTROLS = {
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

/** A range input and a number input side by side, after a small label where one is given; the
 * number takes values outside the bounds too, so the user sees the server's message rather than a
 * silent clamp. */
function sliderPair(info, value, commit, label) {
  const range = el("input", {type: "range", min: info.low, max: info.high, step: info.step || "any", "aria-label": label});
  const number = el("input", {type: "number", step: info.integer ? 1 : "any", class: "number", "aria-label": label});
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
  return el("span", {class: "slider"}, label && el("span", {class: "end"}, label), range, number);
}

/** A pair [a, b] as two sliders labelled low and high (so the two read as one value), or (scalar
 * allowed) one number v; "as range" switches between them: v -> [min(-v, v), max(-v, v)] within
 * the bounds, [a, b] -> max(|a|, |b|). */
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
      }, ["low", "high"][i]))
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
  wrap.rangeToggle = el("span", {class: "toggle"}); // shown under the parameter's name (params.js)
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
export function textControl(text, commitRaw) {
  const input = el("input", {type: "text", class: "text", spellcheck: "false", value: text});
  onTyped(input, commitRaw);
  return input;
}
