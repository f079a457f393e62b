"""Every YAML and JSON document augkit reads goes through one bounded reader.

Pipeline specs (files, and each value of an inline spec), statistics files, training configs,
``--set`` and ``--grid`` values, an ablation's ``plan.json`` and preprocess manifests. The
parsers alone are not safe against a damaged or hostile document: an alias bomb (a few hundred
bytes of YAML standing for 10**9 values) expands as soon as anything walks or prints the result;
deep nesting overflows the recursion of ``json`` and of PyYAML's composer; Python 3.11 refuses
to convert an integer of more than 4300 digits in the middle of a parse (ValueError); a FIFO
named ``x.yaml`` blocks ``open`` forever and ``/dev/zero`` never ends. So, before a parser
builds anything, a document must be:

- a regular file (not a FIFO, a device or a folder);
- at most ``MAX_BYTES`` = 1 MiB (specs and configs are a few kB), or ``MAX_MANIFEST_BYTES``
  = 1 GiB for preprocess manifests and shard records, which list every file (~150 bytes each);
- UTF-8 (a leading BOM is allowed);
- nested at most ``MAX_DEPTH`` = 64 levels (augkit's own documents need fewer than 10);
- of YAML aliases that add, written out in full, at most the size limit again (anchors may
  share values; a bomb is measured, never expanded), none of them inside its own anchor;
- of numbers written with at most ``MAX_NUMBER_CHARS`` = 100 characters (a float64 needs 24,
  an int64 20; 10**309 would no longer convert to float).

Depth is measured on streams that hold no recursion, so the check itself cannot overflow.
YAML nests by indentation and by ``- - -`` on one line as well as by brackets, so only the
parser knows the depth: it is taken from the parser's event stream (libyaml's parser is a
state machine with an explicit stack, as is PyYAML's pure-Python one), and the document is
built only after every event passed. JSON nests by brackets alone, so its depth is that of
the brackets outside strings, found by a regular expression and a cumulative sum: linear, in
memory no larger than the text, and about 1.5-2.5 s on top of json's own 1 s for the 65 MB
manifest of 500 000 files (2-core VM), where a Python loop over parser events would take a minute.

The limits are module constants, read at each call: no document augkit writes comes near
them, and a program that needs more can raise them (``augkit.documents.MAX_DEPTH = 128``) or
pass ``max_bytes``. Every failure is one ``DocumentError`` line naming the document, what is
wrong and the limit; a missing file raises ``FileNotFoundError`` so that each caller words it
as its command does.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import yaml

from augkit import files
from augkit.errors import AugkitError

MAX_BYTES = 1 << 20  # 1 MiB
MAX_MANIFEST_BYTES = 1 << 30  # ~150 bytes per file listed: about 7 million files
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100

Format = Literal["yaml", "json"]

# A JSON string, or an unterminated one running to the end (so a stray quote costs one pass,
# not one pass per later quote); json.loads reports the syntax error itself.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)  # "unrolled": 3x faster
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


class DocumentError(AugkitError):
    """A YAML or JSON document that is unreadable, malformed, or over one of the limits."""


class DocumentSyntaxError(DocumentError):
    """A document within the limits that is not valid YAML or JSON; ``reason`` says where and why."""

    def __init__(self, source: str, language: str, reason: str) -> None:
        self.source, self.language, self.reason = source, language, reason
        super().__init__(f"{source} is not valid {language} ({reason})")

    def __reduce__(self) -> tuple[Any, ...]:  # raised in worker processes too
        return type(self), (self.source, self.language, self.reason)


def read_document(
    path: str | Path, *, what: str = "document", format: Format | None = None, max_bytes: int | None = None
) -> Any:
    """The data in the YAML or JSON file at ``path``, read within the limits above.

    Args:
        what: what the file is, for messages ("pipeline spec", "statistics file").
        format: "yaml" or "json"; None: JSON for a ``.json`` suffix, YAML otherwise.
        max_bytes: the size limit; None: ``MAX_BYTES``.

    Raises:
        FileNotFoundError: there is no such file.
        DocumentError: the file is not a regular file, cannot be read, or breaks a limit;
            ``DocumentSyntaxError`` when it is not valid YAML/JSON.
    """
    path = Path(path)
    limit = MAX_BYTES if max_bytes is None else max_bytes
    with open_regular(path, what) as f:
        try:
            # Python allocates what read() is asked for: ask for the file's size, not the limit
            # (1 GiB for manifests), plus one byte to see a file that grew past it.
            size = os.fstat(f.fileno()).st_size
            data = f.read((min(size, limit) if size else limit) + 1)
        except OSError as e:
            raise DocumentError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > limit:
        raise DocumentError(f"{path}: the {what} is larger than the limit of {_size(limit)}")
    if format is None:
        format = "json" if path.suffix.lower() == ".json" else "yaml"
    return parse_document(data, source=str(path), what=what, format=format, max_bytes=limit)


def parse_document(
    text: str | bytes,
    *,
    source: str,
    what: str = "document",
    format: Format = "yaml",
    max_bytes: int | None = None,
) -> Any:
    """The data in ``text`` (YAML or JSON), parsed within the limits above.

    Args:
        source: how messages name the text: a path, or "--set lr".

    Raises:
        DocumentError: the text breaks a limit; ``DocumentSyntaxError`` when it is not valid.
    """
    limit = MAX_BYTES if max_bytes is None else max_bytes
    raw = _encoded(text) if isinstance(text, str) else bytes(text)
    if len(raw) > limit:
        raise DocumentError(f"{source}: the {what} is larger than the limit of {_size(limit)}")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DocumentError(
            f"{source}: byte 0x{raw[e.start]:02x} (line {line}) is not UTF-8; save the {what} as UTF-8"
        ) from None
    decoded = decoded.removeprefix("\ufeff")
    if format == "json":
        return _load_json(decoded, source)
    return _load_yaml(decoded, source, limit)


def open_regular(path: Path, what: str) -> BinaryIO:
    """``path`` opened for reading in binary, refused unless it is a regular file (``augkit.files``).

    Raises:
        FileNotFoundError: there is no such file.
        DocumentError: it is a folder, a FIFO, a device or a socket, or cannot be opened.
    """
    try:
        return files.open_regular(path)
    except FileNotFoundError:
        raise
    except files.NotRegularFileError as e:
        raise DocumentError(f"{path}: the {what} is a {e.kind}, not a regular file; give a file") from None
    except OSError as e:
        raise DocumentError(f"{path}: cannot open the {what} ({e.strerror or e})") from None


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, so that a message quoting a value from a
    document stays one short line (a 5000-digit integer cannot even be printed: Python refuses)."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4300-digit conversion limit
        return f"an integer of {value.bit_length():,} bits"
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def _encoded(text: str) -> bytes:
    """``text`` as bytes; command-line arguments carry undecodable bytes as surrogates."""
    try:
        return text.encode("utf-8", "surrogateescape")  # back to the bytes that were typed
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")  # other lone surrogates: refused as not UTF-8


# ----------------------------------------------------------------------------- JSON


def _load_json(text: str, source: str) -> Any:
    outside_strings = _JSON_STRING.sub('""', text)
    long_number = re.search(r"[0-9.eE+-]{%d,}" % (MAX_NUMBER_CHARS + 1), outside_strings)
    if long_number:
        raise DocumentError(
            f"{source}: a number written with {len(long_number.group())} characters; "
            f"the limit is {MAX_NUMBER_CHARS}"
        )
    brackets = np.frombuffer(outside_strings.encode("utf-8"), dtype=np.uint8)
    steps = _BRACKET_STEP[brackets]
    steps = steps[steps != 0].astype(np.int32)
    if steps.size and int(np.cumsum(steps).max()) > MAX_DEPTH:
        raise DocumentError(f"{source}: nested more than {MAX_DEPTH} levels deep; the limit is {MAX_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, source))
    except json.JSONDecodeError as e:
        raise DocumentSyntaxError(source, "JSON", f"line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # out of the checks' reach; kept as one line anyway
        raise DocumentError(f"{source}: cannot read it as JSON ({e})") from None


def _unique_keys(pairs: list[tuple[str, Any]], source: str) -> dict[str, Any]:
    """A JSON object, refused when a key appears twice (json keeps the last without a word)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise DocumentError(f"{source}: the key {short_repr(twice)} appears twice in one object")
    return data


# ----------------------------------------------------------------------------- YAML


def _load_yaml(text: str, source: str, max_bytes: int) -> Any:
    try:
        _check_yaml_events(text, source, max_bytes)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (the safe loader, in C when available)
    except yaml.YAMLError as e:
        if "maximum nesting depth" in _problem(e):  # libyaml's scanner runs ahead, and stops at 1000 levels
            where = f" ({_where(e)})" if _where(e) else ""
            raise DocumentError(f"{source}: nested more than {MAX_DEPTH} levels deep{where}; the limit is {MAX_DEPTH}") from None
        raise DocumentSyntaxError(source, "YAML", f"{_where(e)}: {_problem(e)}".removeprefix(": ")) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # a bad date (2024-13-45), a bad !!int
        raise DocumentError(f"{source}: cannot read it as YAML ({e})") from None


def _check_yaml_events(text: str, source: str, max_bytes: int) -> None:
    """Depth, alias expansion and number lengths, from the parser's events, before any node is built.

    Each node's size is measured as YAML would write it out with its aliases expanded: one per
    collection, one plus its length per scalar. An anchor remembers (size, height) of its node;
    an alias adds them where it stands, as integers, so a bomb costs one addition per alias.
    """
    resolver = yaml.resolver.Resolver()
    anchors: dict[str, tuple[int, int]] = {}
    # Per open collection: [anchor, size, height, a mapping's keys so far (None for a sequence),
    # children so far (a mapping's even ones are keys)].
    open_nodes: list[list[Any]] = []
    expansion = 0  # characters that aliases add to the document
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                raise DocumentError(
                    f"{source}: nested more than {MAX_DEPTH} levels deep (line {line}); the limit is {MAX_DEPTH}"
                )
            open_nodes.append([event.anchor, 1, 1, set() if isinstance(event, yaml.MappingStartEvent) else None, 0])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size, height, _, _ = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            _check_number(event, resolver, source, line)
            anchor, size, height = event.anchor, 1 + len(event.value), 0
        elif isinstance(event, yaml.AliasEvent):
            if any(node[0] == event.anchor for node in open_nodes):
                raise DocumentError(f"{source}: alias *{event.anchor} (line {line}) lies inside its own anchor")
            if event.anchor not in anchors:
                raise DocumentSyntaxError(source, "YAML", f"line {line}: alias *{event.anchor} has no anchor")
            anchor, (size, height) = None, anchors[event.anchor]
            expansion += size
            if expansion > max_bytes:
                raise DocumentError(
                    f"{source}: its aliases (line {line}) expand to more than {_size(max_bytes)} "
                    f"(an alias bomb?); write the values out, or repeat fewer anchors"
                )
            if len(open_nodes) + height > MAX_DEPTH:
                raise DocumentError(
                    f"{source}: alias *{event.anchor} (line {line}) nests more than {MAX_DEPTH} levels deep; "
                    f"the limit is {MAX_DEPTH}"
                )
        else:  # stream and document start and end
            continue
        if anchor is not None:
            anchors[anchor] = (size, height)
        if open_nodes:
            parent = open_nodes[-1]
            parent[1] += size
            parent[2] = max(parent[2], height + 1)
            keys = parent[3]
            if keys is not None and parent[4] % 2 == 0 and isinstance(event, yaml.ScalarEvent) and event.value != "<<":
                # PyYAML keeps the last of two equal keys without a word: a typo silently wins.
                if event.value in keys:
                    raise DocumentError(f"{source}: the key {short_repr(event.value)} appears twice in one mapping (line {line})")
                keys.add(event.value)
            parent[4] += 1


def _check_number(event: yaml.ScalarEvent, resolver: yaml.resolver.Resolver, source: str, line: int) -> None:
    """A plain scalar that YAML reads as a number (or one tagged !!int / !!float) is short enough."""
    if len(event.value) <= MAX_NUMBER_CHARS:
        return
    tag = event.tag
    if tag is None or tag == "!":
        tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag in _NUMBER_TAGS:
        raise DocumentError(
            f"{source}: a number written with {len(event.value)} characters (line {line}); "
            f"the limit is {MAX_NUMBER_CHARS}"
        )


# ----------------------------------------------------------------------------- messages


def _where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None) or str(error).strip().splitlines()[0]
    context = getattr(error, "context", None)
    return f"{context}, {problem}" if context else str(problem)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n:,} bytes"
