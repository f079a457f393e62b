// Small helpers every module of the page uses: building elements, and typed fields that commit on
// Enter, on change, or after a pause in typing (so a text field never sends a request per keystroke).

const TYPING_PAUSE_MS = 300; // a typed field is sent this long after the last keystroke (or on Enter/blur)

export const $ = (selector, root = document) => root.querySelector(selector);

/** An element with attributes (on* as listeners; false/null/undefined left out) and children. */
export function el(tag, attrs = {}, ...children) {
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

/** A typed number: null for an empty or unreadable field (left for the user to finish). */
export function typedNumber(text) {
  if (text.trim() === "") return null;
  const number = Number(text);
  return Number.isNaN(number) ? null : number;
}

/** Shows `value` in a typed input without it counting as the user's next edit. */
export function show(input, value) {
  input.value = value === null || value === undefined ? "" : String(value);
  input.committed = input.value;
}

/** Calls commit(text) on change, Enter, or TYPING_PAUSE_MS after typing stops; never twice for one text. */
export function onTyped(input, commit) {
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

export function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}
