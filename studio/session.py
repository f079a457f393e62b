"""What one ``augkit studio`` serves, without the web: the inputs, the pipeline the page edits,
and the answers to the page's requests as plain data (``studio.app`` turns them into HTTP).

Everything here is checked as untrusted input: the page (or anything else that reaches the
port) sends JSON, never a path to read. Images come only from the inputs given on the command
line (a dataset's files that resolve outside its folder are passed over); the one kind of file a
spec may name, a stats file (``standardize``, ``subtract_mean``), must lie under those inputs'
folders or the pipeline file's. Nothing is written: an export is text the page downloads.
"""

from __future__ import annotations

import base64
import re
import shlex
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augkit.documents import parse_document, short_repr
from augkit.errors import AugkitError, AugkitWarning, SpecError
from augkit.io.datasets import sample_data_dir
from augkit.pipeline import load_pipeline
from augkit.pipeline.core import PATH_PARAMS, Pipeline
from augkit.pipeline.registry import COMPOSITIONS, get_step, list_steps, step_parameters
from augkit.pipeline.spec import SPEC_SUFFIXES, canonical_spec, format_inline, from_albumentations, parse_inline
from augkit.preview import Source, collect_sources, contact_sheet

# The page's number fields, and what the command line accepts for the same options.
LIMITS = {"n": (1, 32), "rows": (1, 64), "epoch": (0, 2**31 - 1), "sample_seed": (0, 2**63 - 1), "seed": (0, 2**64 - 1)}
EXPORT_NAME = "pipeline.yaml"  # the name the page downloads the spec as, and the command it shows uses
_CACHED_SAMPLES = 8  # (rows, sample_seed) draws kept decoded: flipping between samples costs no reads
_CACHED_BYTES = 1 << 30  # and at most 1 GiB of them: 64 rows of 12-megapixel photos are 2.3 GB a draw
# Steps in one pipeline, compositions' children included: pipelines people write have tens; the
# stages sheet draws a tile per step, and 30,000 steps took 23 GB before the kernel killed the server.
MAX_STEPS = 256


class BadRequest(AugkitError):
    """A request the page would never send (wrong shape, wrong types): HTTP 400, one line."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with what the page sent, placed where the page shows it.

    ``step``: the index into the steps sent (None: the whole pipeline or sheet); ``key``: the
    parameter (None: the whole step).
    """

    message: str
    step: int | None = None
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "key": self.key, "message": self.message}


class Invalid(AugkitError):
    """What the page sent does not make a pipeline or a sheet: HTTP 422 with every problem."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(p.message for p in self.problems))


class Studio:
    """The state of one studio: inputs, start pipeline and options, and decoded samples.

    Args:
        inputs: images and datasets as given on the command line (none: the sample photos).
        pipeline: the pipeline the page starts with.
        spec_dir: the folder of the pipeline file, when one was given: a stats file it names may
            lie there.
        n, rows, epoch, sample_seed: the sheet the page starts with (``augkit preview``'s
            options of the same names; ``sample_seed`` None: the pipeline's seed).

    Raises:
        AugkitError: an input that cannot be read (checked now, before anything is served).
    """

    def __init__(
        self,
        inputs: Sequence[str | Path],
        pipeline: Pipeline,
        *,
        spec_dir: Path | None = None,
        n: int = 6,
        rows: int = 4,
        epoch: int = 0,
        sample_seed: int | None = None,
    ) -> None:
        self.inputs = [Path(item) for item in inputs]
        self._sources_from = self.inputs or [sample_data_dir() / "photos"]
        self.base_dir = spec_dir.resolve() if spec_dir is not None else Path.cwd()  # as load_pipeline resolves
        folders = [p for p in self._sources_from if p.is_dir()] + ([spec_dir] if spec_dir is not None else [])
        self.roots = [folder.resolve() for folder in folders]  # where a stats file may be read from
        self.spec = pipeline.to_spec()
        self.options = {"n": n, "rows": rows, "epoch": epoch, "sample_seed": pipeline.seed if sample_seed is None else sample_seed}
        self.can_resample = any(p.is_dir() or not p.suffix for p in self._sources_from)
        self._samples: OrderedDict[tuple[int, int], list[Source]] = OrderedDict()
        self._lock = threading.Lock()  # one render at a time: two cores, and the cache is shared
        self.sources(rows, self.options["sample_seed"])  # a bad input fails the command, not the page

    # ------------------------------------------------------------------------- answers

    def state(self) -> dict[str, Any]:
        """``GET /api/state``: what the page starts with."""
        return {
            "inputs": [str(p) for p in self.inputs] or [f"{self._sources_from[0]} (the sample photos)"],
            "can_resample": self.can_resample,
            **_client_steps(self.spec),
            "options": dict(self.options),
            "limits": {key: list(bounds) for key, bounds in LIMITS.items()},
        }

    def steps(self) -> dict[str, Any]:
        """``GET /api/steps``: every step name, augkit's first, with its one-line summary."""
        from augkit.pipeline.parameters import describe_step

        listing = []
        for source in ("augkit", "albumentations"):
            for name in list_steps(source):
                listing.append({"name": name, "source": source, "summary": _summary(name, describe_step)})
        return {"steps": listing}

    def sheet(self, body: Any) -> dict[str, Any]:
        """``POST /api/sheet``: the contact sheet ``augkit preview`` would write, as a data URL.

        Raises:
            BadRequest: a body of the wrong shape.
            Invalid: every problem with the pipeline (or the run on these images).
        """
        body = _mapping(body, "the request")
        n, rows, epoch, sample_seed = (_integer(body, key, self.options[key]) for key in ("n", "rows", "epoch", "sample_seed"))
        stages = body.get("stages")
        pipeline = self.pipeline(body.get("pipeline"))
        started = time.perf_counter()
        with self._lock, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AugkitWarning)
            sources = self.sources(rows, sample_seed)
            if stages is not None:
                if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages < len(sources):
                    raise BadRequest(f"'stages' must be a row of the sheet, 0 to {len(sources) - 1}, or null; got {stages!r}")
                shown = [sources[stages]]
            else:
                shown = sources
            try:
                png = contact_sheet(pipeline, shown, n=n, epoch=epoch, stages=stages is not None)
            except AugkitError as error:  # a step that fails on these images (a crop larger than one)
                raise Invalid([_run_problem(str(error))]) from None
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk
        command = None if stages is not None else self.command(n=n, rows=rows, epoch=epoch, sample_seed=sample_seed)
        return {
            "ok": True,
            "png": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
            "width": width,
            "height": height,
            "sources": [{"label": s.label, "index": s.index} for s in sources],
            "inline": format_inline(pipeline.to_spec()),
            "command": command,
            "warnings": _augkit_warnings(caught),
            "ms": round((time.perf_counter() - started) * 1000),
        }

    def export(self, body: Any) -> dict[str, Any]:
        """``POST /api/export``: the spec as the YAML file the page downloads, and inline.

        Stats files are named by absolute path (``pipeline`` makes them so): the download may land
        in any folder.
        """
        pipeline = self.pipeline(_mapping(body, "the request").get("pipeline"))
        return {"ok": True, "yaml": pipeline.to_text(".yaml"), "inline": format_inline(pipeline.to_spec()), "filename": EXPORT_NAME}

    def import_spec(self, body: Any) -> dict[str, Any]:
        """``POST /api/import``: a spec file's text (YAML, JSON, albumentations' save format) or
        an inline spec, read and checked, as the page's steps.

        The text is only ever parsed: a string that happens to name a file on this machine is an
        inline spec here, never a path to open.
        """
        body = _mapping(body, "the request")
        text, name = body.get("text"), body.get("name") or "imported spec"
        if not isinstance(text, str) or not isinstance(name, str):
            raise BadRequest("'text' (the spec) and 'name' (its file name, optional) must be strings")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AugkitWarning)
            try:
                spec = _read_spec_text(text, name)
                if _count_steps(spec["steps"]) > MAX_STEPS:
                    raise Invalid([_too_many_steps(_count_steps(spec["steps"]))])
                self._check_paths(spec["steps"])
                load_pipeline(spec, base_dir=self.base_dir)
            except Invalid:
                raise
            except AugkitError as error:
                raise Invalid([Problem(str(error))]) from None
        return {"ok": True, **_client_steps(spec), "warnings": _augkit_warnings(caught)}

    # ------------------------------------------------------------------------- parts

    def pipeline(self, data: Any) -> Pipeline:
        """The pipeline the page sent, each step checked on its own so every problem is reported.

        Raises:
            BadRequest, Invalid: see ``sheet``.
        """
        data = _mapping(data, "'pipeline'")
        steps = data.get("steps")
        if not isinstance(steps, list):
            raise BadRequest("'pipeline' needs 'steps', a list of {name, params, raw}")
        if len(steps) > MAX_STEPS:  # before each is checked: 4 MiB of JSON is 200,000 steps
            raise Invalid([_too_many_steps(len(steps))])
        problems: list[Problem] = []
        seed = data.get("seed", 0)
        low, high = LIMITS["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
            problems.append(Problem(f"the seed must be a whole number from {low} to {high}, got {seed!r}"))
        if not isinstance(data.get("compile", True), bool):
            problems.append(Problem(f"'compile' must be true or false, got {data['compile']!r}"))
        canonical = []
        for i, step in enumerate(steps):
            step_problems, built = self._step(i, step)
            problems += step_problems
            canonical.append(built)
        if not problems and _count_steps(canonical) > MAX_STEPS:
            problems.append(_too_many_steps(_count_steps(canonical)))
        if problems:
            raise Invalid(problems)
        spec = {"seed": seed, "steps": canonical}
        if data.get("compile", True) is False:
            spec["compile"] = False
        if data.get("targets") is not None:  # the spec's boxes and keypoints declaration, as imported
            spec["targets"] = data["targets"]
        try:
            spec = canonical_spec(spec)
            for step in spec["steps"]:  # as the export names them, so the sheet's title is the exported file's
                _absolute_paths(step, self.base_dir)
            return load_pipeline(spec, base_dir=self.base_dir)
        except AugkitError as error:  # every step builds alone: a problem of the whole (none known)
            raise Invalid([Problem(str(error))]) from None

    def _step(self, i: int, step: Any) -> tuple[list[Problem], dict[str, Any]]:
        """(problems, ``{name: params}``) for one step the page sent: raw texts parsed, file
        parameters confined, and the step built alone, so its errors name it."""
        if not isinstance(step, Mapping) or not isinstance(step.get("name"), str):
            raise BadRequest(f"steps[{i}] must be {{name, params, raw}}, got {type(step).__name__}")
        name, params, raw = step["name"], step.get("params") or {}, step.get("raw") or {}
        if not isinstance(params, Mapping) or not isinstance(raw, Mapping):
            raise BadRequest(f"steps[{i}] ({name}): 'params' and 'raw' must be mappings")
        params, problems = dict(params), []
        for key, text in raw.items():
            if not isinstance(text, str):
                raise BadRequest(f"steps[{i}] ({name}): raw values are the text typed, got {type(text).__name__} for {key!r}")
            try:
                params[key] = parse_document(text, source=f"{name}: {key}", what="value")
            except AugkitError as error:
                problems.append(Problem(str(error), i, key))
        built = {name: params}
        if problems:
            return problems, built
        if _count_steps([built]) > MAX_STEPS:  # checked before a composition of thousands is built
            return [Problem(_too_many_steps(_count_steps([built])).message, i, "transforms")], built
        # A problem of a composition's child is shown at the text that holds the children.
        nested = name in COMPOSITIONS
        try:
            self._check_paths([built])
            load_pipeline({"steps": [built]}, base_dir=self.base_dir)
        except Invalid as invalid:
            return [Problem(p.message, i, "transforms" if nested else p.key) for p in invalid.problems], built
        except AugkitError as error:
            message = re.sub(r"^steps\[0\]: ", "", str(error))
            if nested and not message.startswith(f"step '{name}'"):
                return [Problem(message, i, "transforms")], built
            named_file = next((k for k, value in _file_params([built]) if value and value in message), None)  # "x.json: not found"
            return [Problem(message, i, _problem_key(message, name) or named_file)], built
        return [], built

    def _check_paths(self, steps: Sequence[Mapping[str, Any]]) -> None:
        """Refuse a file parameter (a stats file) that resolves outside the studio's folders."""
        problems = []
        for key, value in _file_params(steps):
            try:
                path = (self.base_dir / value).resolve()
            except (ValueError, OSError, RuntimeError) as error:  # a NUL in the name; a symlink loop (3.11: RuntimeError)
                problems.append(Problem(f"{key}: {short_repr(value)} is not a file augkit studio can read ({error})", key=key))
                continue
            if not any(root in path.parents for root in self.roots):
                where = ", ".join(str(root) for root in self.roots) or "none: no folder was given"
                problems.append(Problem(
                    f"{key}: {value} is outside the folders augkit studio reads ({where}); put the file in one, "
                    f"or start the studio with -p a pipeline file beside it", key=key))  # fmt: skip
        if problems:
            raise Invalid(problems)

    def sources(self, rows: int, sample_seed: int) -> list[Source]:
        """The images of a sheet: each input image, and ``rows`` sampled from each dataset."""
        key = (rows, sample_seed)
        if key not in self._samples:
            self._samples[key] = collect_sources(self._sources_from, rows=rows, seed=sample_seed, confined=True)
        self._samples.move_to_end(key)
        while len(self._samples) > 1 and (len(self._samples) > _CACHED_SAMPLES or _decoded_bytes(self._samples) > _CACHED_BYTES):
            self._samples.popitem(last=False)  # the oldest draw; the one asked for stays
        return self._samples[key]

    def command(self, *, n: int, rows: int, epoch: int, sample_seed: int) -> str:
        """The ``augkit preview`` command that writes this sheet, given the exported file."""
        words = ["augkit", "preview", *map(str, self.inputs), "-p", EXPORT_NAME, "-n", str(n), "--rows", str(rows)]
        if epoch:
            words += ["--epoch", str(epoch)]
        words += ["--sample-seed", str(sample_seed)]
        return shlex.join(words)


# ----------------------------------------------------------------------------- helpers


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadRequest(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _integer(body: Mapping[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    low, high = LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        label = _LABELS.get(key, key)
        raise Invalid([Problem(f"{label} must be a whole number from {low} to {high}, got {short_repr(value)}")])
    return value


_LABELS = {"n": "variants", "sample_seed": "the sample's seed"}  # as the page labels them


def _augkit_warnings(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """augkit's warnings (a file passed over, a spec without a seed), for the page to show."""
    return [str(w.message) for w in caught if issubclass(w.category, AugkitWarning)]


def _summary(name: str, describe: Any) -> str:
    try:
        return describe(name)[0]
    except Exception:  # noqa: BLE001 (a transform whose docstring cannot be read still lists)
        return ""


def _client_steps(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical spec in the page's form: steps as {name, params}, the seed, compile, and the
    targets it declares (null when none)."""
    steps = [{"name": name, "params": params} for step in spec["steps"] for name, params in step.items()]
    return {"steps": steps, "seed": spec["seed"], "compile": spec.get("compile", True), "targets": spec.get("targets")}


def _problem_key(message: str, name: str) -> str | None:
    """The parameter a step's message is about: "parameter 'limit' got ..." or a message that
    starts with the parameter's name ("limit must lie within ..."); None when it names none."""
    quoted = re.search(r"parameter '(\w+)'", message)
    if quoted:
        return quoted.group(1)
    rest = message.split(": ", 1)[-1] if message.startswith("step ") else message
    first = re.match(r"(\w+)\b", rest)
    try:
        accepted = step_parameters(get_step(name))
    except SpecError:
        return None
    return first.group(1) if first and first.group(1) in accepted else None


def _run_problem(message: str) -> Problem:
    """A failure while the sheet ran, placed at its step when the message names it."""
    where = re.search(r"\(steps\[(\d+)\]\)", message)
    return Problem(message, int(where.group(1)) if where else None)


def _decoded_bytes(samples: Mapping[Any, Sequence[Source]]) -> int:
    return sum(source.image.nbytes for sources in samples.values() for source in sources)


def _too_many_steps(count: int) -> Problem:
    return Problem(f"a pipeline holds at most {MAX_STEPS} steps (compositions' children included), got {count}; use fewer")


def _count_steps(steps: Any) -> int:
    """How many steps ``steps`` (canonical, or not yet checked) holds, compositions' children included."""
    if not isinstance(steps, list):
        return 0
    count = 0
    for step in steps:
        count += 1
        if isinstance(step, Mapping) and len(step) == 1:
            ((_, params),) = step.items()
            count += _count_steps(params.get("transforms")) if isinstance(params, Mapping) else 0
    return count


def _file_params(steps: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """(key, value) of every file parameter (``PATH_PARAMS``) set in ``steps``, compositions' too."""
    for step in steps:
        if not isinstance(step, Mapping) or len(step) != 1:
            continue  # not a step: the pipeline's own check says so
        ((name, params),) = step.items()
        if not isinstance(params, Mapping):
            continue
        for key in PATH_PARAMS.get(name, ()):
            if isinstance(params.get(key), str):
                yield key, params[key]
        if isinstance(params.get("transforms"), list):
            yield from _file_params(params["transforms"])


def _absolute_paths(step: dict[str, Any], base_dir: Path) -> None:
    """Rewrite, in place, the file parameters of a canonical step (and its children) as absolute paths."""
    ((name, params),) = step.items()
    for key in PATH_PARAMS.get(name, ()):
        if isinstance(params.get(key), str):
            params[key] = str((base_dir / params[key]).resolve())
    for child in params.get("transforms", []):
        _absolute_paths(child, base_dir)


def _read_spec_text(text: str, name: str) -> dict[str, Any]:
    """A spec from text: a file's contents by its name's suffix, else YAML when it has several
    lines or starts as a mapping or list does, else the inline form."""
    suffix = Path(name).suffix.lower()
    stripped = text.strip()
    if suffix in SPEC_SUFFIXES or "\n" in stripped or stripped[:1] in ("{", "[") or stripped.startswith(("seed:", "steps:")):
        data = parse_document(text, source=name, what="pipeline spec", format="json" if suffix == ".json" else "yaml")
        if isinstance(data, Mapping) and "transform" in data and "steps" not in data:
            return from_albumentations(data, name)
        return canonical_spec(data)
    return canonical_spec(parse_inline(stripped))
