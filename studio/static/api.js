// The studio server's JSON API (studio/app.py lists the routes, studio/session.py answers them),
// and the runner that keeps at most one sheet request in flight.

/** The server does not answer (stopped, or the network is down): the page says so, never alert()s. */
export class Unreachable extends Error {}

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

/** GET (no body) or POST JSON to the studio server: {status, data}; Unreachable when it does not answer.
 * Paths are relative ("api/sheet"), so the page also works behind a proxy that serves it under a prefix. */
export async function api(path, body) {
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

/** Runs the async `task` with at most one call in flight. schedule() during a call marks it pending,
 * and the call that returns starts one more: a dragged slider sends the latest state when the server
 * is free, never a queue of stale requests. `inFlight` says whether a call is running. */
export function latestOnly(task) {
  const runner = {
    inFlight: false,
    pending: false,
    schedule() {
      runner.pending = true;
      if (runner.inFlight) return;
      runner.inFlight = true;
      queueMicrotask(run); // changes made in the same event go out as one request
    },
  };
  async function run() {
    runner.pending = false;
    try {
      await task();
    } finally {
      if (runner.pending) run();
      else runner.inFlight = false;
    }
  }
  return runner;
}
