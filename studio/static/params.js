// A card's parameters: a row per parameter (name, control, reset, error, meaning), folded to the
// ones that matter when a step has many (albumentations' transforms have up to ~15).

import {el} from "./dom.js";
import {CONTROLS, controlKind, textControl, toFlow} from "./controls.js";
import {scheduleUpdate} from "./sheet.js";

const FOLD_AFTER = 6; // a card with more parameters than this shows p and the set ones until "more"
const folds = new WeakMap(); // step object -> true when its card is unfolded (kept across re-renders)

/** The parameter controls of `step`'s card; redraw() draws the card anew (after a reset). */
export function paramList(step, schema, card, redraw) {
  const list = el("div", {class: "params"});
  for (const info of schema.parameters) {
    const param = paramControl(step, info, redraw);
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

function paramControl(step, info, redraw) {
  const key = info.name;
  const value = key in step.params ? step.params[key] : info.default;
  const kind = key in step.raw ? "text" : controlKind(info, value);
  const param = el("div", {class: "param", "data-param": key, "data-control": kind});
  param.classList.toggle("set", key in step.params || key in step.raw);
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
  const reset = () => {
    delete step.params[key];
    delete step.raw[key];
    redraw(); // the control shows the default again
    if (step.enabled) scheduleUpdate();
  };
  const defaultText = info.required ? "required" : `default ${toFlow(info.default)}`;
  const about = [info.type, info.bounds, defaultText].filter(Boolean).join("; ");
  const control = key in step.raw ? textControl(step.raw[key], commitRaw) : CONTROLS[kind](info, value, commit, commitRaw);
  param.append(
    el("div", {class: "param-label"}, el("span", {class: "param-name", title: `${key}: ${about}`}, breakable(key)), control.rangeToggle),
    el("div", {class: "param-control"}, control),
    el("button", {type: "button", class: "reset", title: `reset to the default (${defaultText})`, "aria-label": `reset ${key}`, onclick: reset}, "↺"),
    el("p", {class: "param-error"}), // right under the control, above the meaning
    info.meaning ? el("p", {class: "param-meaning", title: info.meaning}, info.meaning) : null);
  return param;
}

/** A parameter name that wraps after its underscores ("translate_/percent"), not mid-word. */
function breakable(name) {
  return name.split("_").flatMap((part, i, parts) => (i < parts.length - 1 ? [`${part}_`, el("wbr")] : [part]));
}
