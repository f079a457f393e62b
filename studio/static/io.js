// Export (the spec as pipeline.yaml, or inline on the clipboard), import (a spec file or pasted
// inline text replaces the pipeline and its seed), and copying the reproduce command.

import {$, el, plural} from "./dom.js";
import {Unreachable, api} from "./api.js";
import {pipelineToSend} from "./state.js";
import {placeErrors, scheduleUpdate} from "./sheet.js";
import {setPipeline} from "./steps.js";

function ioMessage(text, kind = "") {
  const message = $("#io-message");
  message.textContent = text;
  message.className = `io-message ${kind}`;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (error) {
    return false; // no clipboard permission (or not a secure context): the caller shows the text instead
  }
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

export function setUpIO() {
  $("#export").addEventListener("click", downloadYaml);
  $("#copy-inline").addEventListener("click", copyInline);
  $("#copy-command").addEventListener("click", (event) => copyCommand(event.target));
  $("#import-file").addEventListener("change", (event) => importFile(event.target));
  $("#import-button").addEventListener("click", () => importSpec($("#import-text").value));
  $("#import-text").addEventListener("keydown", (event) => event.key === "Enter" && importSpec($("#import-text").value));
}
