// augkit studio: the page. Plain ES2020 modules, no framework, no build step, nothing from the
// network but the studio server's own /api. This module wires the header's sheet options and starts
// the page: the rest lives in
//   state.js (the model)       api.js (requests)        sheet.js (the sheet, status, errors)
//   steps.js (the cards)       params.js, controls.js   finder.js (add a step)   io.js (export/import)

import {$, onTyped, show, typedNumber} from "./dom.js";
import {Unreachable, api} from "./api.js";
import {studio} from "./state.js";
import {scheduleUpdate, setStatus, setUpSheet} from "./sheet.js";
import {setPipeline, setUpSteps} from "./steps.js";
import {setCatalogue, setUpFinder} from "./finder.js";
import {setUpIO} from "./io.js";

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

/** The header from /api/state: the options' values and limits, the inputs shown. */
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

async function start() {
  setUpSheet();
  setUpOptions();
  setUpSteps();
  setUpFinder();
  setUpIO();
  try {
    const [{data: state}, {data: catalogue}] = await Promise.all([api("api/state"), api("api/steps")]);
    setCatalogue(catalogue.steps || []);
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
