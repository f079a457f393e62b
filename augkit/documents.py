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
pass ``max_bytes``.

Every failure is one ``DocumentError`` line: the document, where in it (``path:line:column:``
for a file, as compilers write it, so that editors and terminals jump there; "(column C)" or
"(line L, column C)" after the reason for a value typed on the command line), what is wrong in
the parser's words with its jargon put in the user's ("while parsing a flow mapping" becomes
"'{' mapping that starts here is never closed"), and the limit or what to check. A missing
file raises ``FileNotFoundError`` so that each caller words it as its command does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
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
    """A document within the limits that is not valid YAML or JSON.

    ``reason`` says where and why ("line 4, column 1: ..."), for callers that word the message
    themselves; ``str()`` is the whole line ("bad.yaml:4:1: not valid YAML: ...").
    """

    def __init__(self, source: str, language: str, reason: str, message: str | None = None) -> None:
        self.source, self.language, self.reason = source, language, reason
        super().__init__(message or f"{source}: not valid {language}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:  # raised in worker processes too
        return type(self), (self.source, self.language, self.reason, str(self))


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
            ``DocumentSyntaxError`` when it is not valid YAML/JSON. The message starts with
            ``path:line:column:`` wherever the position is known.
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
    if format is None:
        format = "json" if path.suffix.lower() == ".json" else "yaml"
    return _parse(data, _Place(str(path), in_file=True), what, format, limit)


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
        source: how messages name the text: "--set lr", "inline pipeline: crop(size=...)";
            a position in it follows the reason, as "(column C)", or "(line L, column C)" when
            the text has several lines.

    Raises:
        DocumentError: the text breaks a limit; ``DocumentSyntaxError`` when it is not valid.
    """
    raw = _encoded(text) if isinstance(text, str) else bytes(text)
    limit = MAX_BYTES if max_bytes is None else max_bytes
    return _parse(raw, _Place(source, in_file=False, one_line=b"\n" not in raw.strip()), what, format, limit)


def _parse(raw: bytes, place: _Place, what: str, format: Format, limit: int) -> Any:
    if len(raw) > limit:
        raise DocumentError(place.say(f"the {what} is larger than the limit of {_size(limit)}"))
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        start = raw.rfind(b"\n", 0, e.start) + 1
        line, column = raw.count(b"\n", 0, e.start) + 1, len(raw[start : e.start].decode("utf-8", "replace")) + 1
        raise DocumentError(
            place.say(f"byte 0x{raw[e.start]:02x} is not UTF-8", line, column, tail=f"; save the {what} as UTF-8")
        ) from None
    decoded = decoded.removeprefix("\ufeff")
    if format == "json":
        return _load_json(decoded, place)
    return _load_yaml(decoded, place, limit)


@dataclass(frozen=True)
class _Place:
    """How messages name a document, and a position in it.

    A file's position leads, as ``path:line:column:`` (what compilers print, and editors and
    terminals turn into a link); a value typed on the command line is named by the option, the
    position follows the reason in words.
    """

    source: str
    in_file: bool
    one_line: bool = False

    def where(self, line: int, column: int) -> str:
        return f"column {column}" if self.one_line and line == 1 else f"line {line}, column {column}"

    def syntax_error(self, language: str, reason: str, line: int | None = None, column: int | None = None,
                     tail: str = "") -> DocumentSyntaxError:  # fmt: skip
        """A DocumentSyntaxError whose line is ``say``'s, and whose ``reason`` starts with the position."""
        position = "" if line is None else f"line {line}, column {column}: "
        return DocumentSyntaxError(self.source, language, f"{position}{reason}{tail}",
                                   self.say(f"not valid {language}: {reason}", line, column, tail=tail))  # fmt: skip

    def unclosed(self, what: str) -> str:
        """"'{' that starts here is never closed", for a message that gives the position."""
        return f"{what} that starts here is never closed" if self.in_file else f"{what} is never closed"

    def say(self, reason: str, line: int | None = None, column: int | None = None, *, tail: str = "") -> str:
        """One line: the document, the position (1-based) if known, the reason, then ``tail``."""
        if line is None:
            return f"{self.source}: {reason}{tail}"
        if self.in_file:
            return f"{self.source}:{line}{'' if column is None else f':{column}'}: {reason}{tail}"
        where = f"line {line}" if column is None else self.where(line, column)
        return f"{self.source}: {reason} ({where}){tail}"


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


def _line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``."""
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


# ----------------------------------------------------------------------------- JSON


def _load_json(text: str, place: _Place) -> Any:
    outside_strings = _JSON_STRING.sub('""', text)
    long_number = re.search(r"[0-9.eE+-]{%d,}" % (MAX_NUMBER_CHARS + 1), outside_strings)
    if long_number:
        at = _json_scan(text, lambda token, depth: len(token) > MAX_NUMBER_CHARS and token[0] not in "[]{}")
        raise DocumentError(place.say(
            f"a number written with {len(long_number.group())} characters", *at,
            tail=f"; the limit is {MAX_NUMBER_CHARS}",
        ))  # fmt: skip
    brackets = np.frombuffer(outside_strings.encode("utf-8"), dtype=np.uint8)
    steps = _BRACKET_STEP[brackets]
    steps = steps[steps != 0].astype(np.int32)
    if steps.size and int(np.cumsum(steps).max()) > MAX_DEPTH:
        at = _json_scan(text, lambda token, depth: depth > MAX_DEPTH)
        raise DocumentError(place.say(f"nested more than {MAX_DEPTH} levels deep", *at, tail=f"; the limit is {MAX_DEPTH}"))
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, place))
    except json.JSONDecodeError as e:
        raise _json_syntax_error(text, place, e) from None
    except (ValueError, RecursionError) as e:  # out of the checks' reach; kept as one line anyway
        raise DocumentError(place.say(f"cannot read it as JSON ({e})")) from None


def _json_scan(text: str, stop: Callable[[str, int], bool]) -> tuple[int, int] | tuple[None, None]:
    """(line, column) of the first bracket or number outside strings for which ``stop(token,
    depth after it)`` holds. Only on the way to an error message: a Python loop over tokens."""
    tokens = re.compile(_JSON_STRING.pattern + r"|[\[\]{}]|[0-9.eE+-]+", re.DOTALL)
    depth = 0
    for match in tokens.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        depth += 1 if token in "[{" else -1 if token in "]}" else 0
        if stop(token, depth):
            return _line_column(text, match.start())
    return None, None


def _json_syntax_error(text: str, place: _Place, error: json.JSONDecodeError) -> DocumentSyntaxError:
    """json's message at json's position, with what a person who wrote the file would check."""
    reason, line, column = error.msg[:1].lower() + error.msg[1:], error.lineno, error.colno
    ahead = text[error.pos : error.pos + 1]
    behind = text[: error.pos].rstrip()[-1:]
    tail = ""
    if not text.strip():
        reason, line, column = "it is empty", None, None
    elif error.msg.startswith("Unterminated string"):
        reason, tail = place.unclosed("the string"), "; end it with '\"'"
    elif error.pos >= len(text.rstrip()):  # the text ended first: point at what it left open
        opened: list[int] = []
        for match in re.finditer(_JSON_STRING.pattern + r"|[\[\]{}]", text, re.DOTALL):
            token = match.group()
            if token in "[{":
                opened.append(match.start())
            elif token in "]}" and opened:
                opened.pop()
        if opened:
            line, column = _line_column(text, opened[-1])
            reason, tail = place.unclosed(f"the '{text[opened[-1]]}'"), f"; {error.msg.lower()} by the end"
    elif behind == "," and ahead in ("]", "}"):
        tail = f"; JSON allows no comma before '{ahead}'"
    elif ahead == "'":
        tail = "; JSON strings take double quotes"
    elif ahead in ("/", "#"):
        tail = "; JSON has no comments"
    elif error.msg == "Extra data":
        tail = "; a JSON document holds one value"
    elif error.msg == "Expecting value" and ahead.isalpha():
        tail = "; JSON's words are true, false and null, and text goes in double quotes"
    return place.syntax_error("JSON", reason, line, column, tail)


def _unique_keys(pairs: list[tuple[str, Any]], place: _Place) -> dict[str, Any]:
    """A JSON object, refused when a key appears twice (json keeps the last without a word)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise DocumentError(place.say(f"the key {short_repr(twice)} appears twice in one object"))
    return data


# ----------------------------------------------------------------------------- YAML


class _ValueError(Exception):
    """A scalar the constructor could not convert (2024-13-45 as a date), with its node."""

    def __init__(self, node: yaml.Node, error: Exception) -> None:
        self.node, self.error = node, error


class _LocatingLoader(_Loader):  # type: ignore[misc, valid-type]
    """The safe loader, telling which node a constructor failed on (PyYAML says only why)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as error:
            raise _ValueError(node, error) from None


# A tag's last part -> what a value of it is, for "cannot read '2024-13-45' as a date".
_TAG_NAMES = {
    "timestamp": "a date", "int": "an integer", "float": "a number", "binary": "base64 data", "bool": "true or false",
}  # fmt: skip


def _load_yaml(text: str, place: _Place, max_bytes: int) -> Any:
    try:
        _check_yaml_events(text, place, max_bytes)
        return yaml.load(text, Loader=_LocatingLoader)  # noqa: S506 (the safe loader, in C when available)
    except yaml.MarkedYAMLError as e:
        if "maximum nesting depth" in str(e.problem):  # libyaml's scanner runs ahead, and stops at 1000 levels
            line, column = _mark(e.problem_mark or e.context_mark)
            reason = f"nested more than {MAX_DEPTH} levels deep"
            raise DocumentError(place.say(reason, line, column, tail=f"; the limit is {MAX_DEPTH}")) from None
        raise _yaml_syntax_error(text, place, e) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow; position: an index into text
        line, column = _line_column(text, e.position)
        reason = f"character {chr(e.character)!r}: {e.reason}" if isinstance(e.character, int) else str(e.reason)
        raise place.syntax_error("YAML", reason, line, column) from None
    except yaml.YAMLError as e:  # any other without a position
        raise place.syntax_error("YAML", str(e).strip().splitlines()[0]) from None
    except _ValueError as e:
        node, (line, column) = e.node, _mark(e.node.start_mark)
        kind = _TAG_NAMES.get(str(node.tag).rsplit(":", 1)[-1])
        if kind is None or not isinstance(node.value, str):
            raise DocumentError(place.say(f"cannot read it as YAML ({e.error})", line, column)) from None
        raise DocumentError(place.say(f"cannot read {short_repr(node.value)} as {kind} ({e.error})", line, column)) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        raise DocumentError(place.say(f"cannot read it as YAML ({e})")) from None


def _mark(mark: Any) -> tuple[int, int] | tuple[None, None]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


# PyYAML's context ("while parsing a flow mapping") -> what the user wrote there.
_CONTEXTS = {
    "while parsing a flow mapping": "the '{' mapping",
    "while parsing a flow sequence": "the '[' list",
    "while parsing a block mapping": "the mapping",
    "while parsing a block collection": "the list",
    "while scanning a quoted scalar": "the quoted text",
    "while scanning a simple key": "the key",
    "while constructing a mapping": "the mapping",
}
# Contexts of something opened with a character of its own, which the text can end inside.
_OPENED = ("while parsing a flow mapping", "while parsing a flow sequence", "while scanning a quoted scalar")
# PyYAML's problem -> what to check, for the mistakes people make writing YAML by hand.
_HINTS = {
    "did not find expected key": "check this line's indentation against the lines above",
    "expected <block end>": "check this line's indentation against the lines above",
    "mapping values are not allowed": "put a value that holds ': ' in quotes",
    "could not find expected ':'": "a key needs ': ' after it",
    "found unhashable key": "a key is text or a number",
    "could not determine a constructor": "augkit reads plain YAML, without tags that build Python objects",
}


def _yaml_syntax_error(text: str, place: _Place, error: yaml.MarkedYAMLError) -> DocumentSyntaxError:
    """The parser's problem at its position, its jargon put in the user's words."""
    problem, context = str(error.problem or error), error.context or ""
    line, column = _mark(error.problem_mark)
    start = _mark(error.context_mark)
    thing = _CONTEXTS.get(context) or re.sub(r"^while \w+ an? ", "the ", context)
    index = error.problem_mark.index if error.problem_mark is not None else 0
    tail = ""
    if "cannot start any token" in problem:
        found = text[index : index + 1]
        if found == "\t":
            problem = "found a tab; YAML indents with spaces, never tabs"
        else:
            problem, tail = f"found {found!r}, which cannot start a value", "; put the value in quotes"
    elif index >= len(text.rstrip()) and context in _OPENED and error.context_mark is not None:
        # The text ended inside something: where it opened is where to look.
        line, column = start
        problem = place.unclosed(thing)
        expected = str(error.problem).removeprefix("did not find ").removeprefix("found unexpected end of stream")
        tail = f"; {expected} by the end" if expected else ""
    else:
        if context and start != (line, column) and thing.startswith("the "):
            tail = f", in {thing} that starts at {place.where(*start)}"
        hint = next((h for key, h in _HINTS.items() if problem.startswith(key)), None)
        tail += f"; {hint}" if hint else ""
    return place.syntax_error("YAML", problem, line, column, tail)


def _check_yaml_events(text: str, place: _Place, max_bytes: int) -> None:
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
        at = _mark(event.start_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                reason = f"nested more than {MAX_DEPTH} levels deep"
                raise DocumentError(place.say(reason, *at, tail=f"; the limit is {MAX_DEPTH}"))
            open_nodes.append([event.anchor, 1, 1, set() if isinstance(event, yaml.MappingStartEvent) else None, 0])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size, height, _, _ = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            _check_number(event, resolver, place)
            anchor, size, height = event.anchor, 1 + len(event.value), 0
        elif isinstance(event, yaml.AliasEvent):
            if any(node[0] == event.anchor for node in open_nodes):
                raise DocumentError(place.say(f"alias *{event.anchor} lies inside its own anchor", *at))
            if event.anchor not in anchors:
                reason = f"alias *{event.anchor} has no anchor"
                raise place.syntax_error("YAML", reason, *at, f"; write &{event.anchor} before it")
            anchor, (size, height) = None, anchors[event.anchor]
            expansion += size
            if expansion > max_bytes:
                raise DocumentError(place.say(
                    f"its aliases expand to more than {_size(max_bytes)} (an alias bomb?)", *at,
                    tail="; write the values out, or repeat fewer anchors",
                ))  # fmt: skip
            if len(open_nodes) + height > MAX_DEPTH:
                raise DocumentError(place.say(
                    f"alias *{event.anchor} nests more than {MAX_DEPTH} levels deep", *at, tail=f"; the limit is {MAX_DEPTH}"
                ))  # fmt: skip
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
                    raise DocumentError(place.say(f"the key {short_repr(event.value)} appears twice in one mapping", *at))
                keys.add(event.value)
            parent[4] += 1


def _check_number(event: yaml.ScalarEvent, resolver: yaml.resolver.Resolver, place: _Place) -> None:
    """A plain scalar that YAML reads as a number (or one tagged !!int / !!float) is short enough."""
    if len(event.value) <= MAX_NUMBER_CHARS:
        return
    tag = event.tag
    if tag is None or tag == "!":
        tag = resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
    if tag in _NUMBER_TAGS:
        raise DocumentError(place.say(
            f"a number written with {len(event.value)} characters", *_mark(event.start_mark),
            tail=f"; the limit is {MAX_NUMBER_CHARS}",
        ))  # fmt: skip


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n:,} bytes"
