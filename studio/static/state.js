// The model: `studio.state` is the pipeline being edited ({seed, compile, targets, steps: [{name,
// params, raw, enabled}]}; targets: the spec's boxes and keypoints declaration, or null), `studio.options` the sheet's options. The cards are drawn from it and their controls
// write back into it. window.studio exposes it to the browser tests and bench/studio_latency.py.

export const studio = {
  version: 0, // +1 each time a new sheet is shown; #sheet's data-version once it has loaded
  lastUpdateMs: null, // from the change to the sheet's load, in milliseconds
  state: {seed: 0, compile: true, targets: null, steps: []},
  options: {n: 6, rows: 4, epoch: 0, sample_seed: 0, stages: null},
};
window.studio = studio;

/** The pipeline as the server takes it: enabled steps only, and which card each sent index is
 * (the server's errors name the index sent; `indices` maps it back to the card). */
export function pipelineToSend() {
  const steps = [];
  const indices = [];
  studio.state.steps.forEach((step, i) => {
    if (!step.enabled) return;
    steps.push({name: step.name, params: step.params, raw: step.raw});
    indices.push(i);
  });
  const {seed, compile, targets} = studio.state;
  return {pipeline: {seed, compile, ...(targets ? {targets} : {}), steps}, indices};
}
