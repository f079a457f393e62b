"""augkit.documents: the one bounded reader of YAML and JSON, against documents that attack it.

Every attack of issue 9 (a 1e5-deep list, a YAML alias bomb, a 5000-digit integer, a byte
that is not UTF-8) goes into every kind of document augkit parses: a pipeline spec file (YAML
and JSON), an inline spec, a statistics file, a training config, a ``--set`` value and a
``--grid`` value. Each must end in one line naming the document and the limit, never in a
RecursionError, a MemoryError, a ValueError traceback or a hang. The CLI is driven through
real processes for the commands the issue names.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import augkit
import augkit.documents as documents
from augkit.cli.main import cli
from augkit.documents import DocumentError, DocumentSyntaxError, parse_document, read_document
from augkit.errors import AugkitError, SpecError
from augkit.stats import ChannelStats
from augkit.train.config import TrainConfig, parse_assignment
from augkit.train.grid import parse_grid

DEEP = "[" * 100_000 + "]" * 100_000


def alias_bomb() -> str:
    """Nine levels of nine aliases: 9**9 = 387 million strings when expanded, 400 bytes written."""
    levels = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "[" + ", ".join(levels) + "]"


# name -> (value as text, what the one line says, the limit it names). The non-UTF-8 byte is
# carried as a surrogate, as Python hands undecodable command-line bytes over, and written to
# files as the byte itself.
ATTACKS = {
    "deep list": (DEEP, "nested more than 64 levels deep", "the limit is 64"),
    "alias bomb": (alias_bomb(), "aliases", "expand to more than 1 MiB"),
    "5000-digit integer": ("9" * 5000, "a number written with 5000 characters", "the limit is 100"),
    "non-UTF-8 byte": ("\udcff", "byte 0xff", "is not UTF-8"),
}
# JSON has no aliases: the bomb is not JSON at all.
JSON_MESSAGE = {"alias bomb": ("not valid JSON",)}


def as_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def assert_one_line(error: BaseException, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message and len(message) < 400, message
    for fragment in fragments:
        assert fragment in message, message


# ----------------------------------------------------------------------------- every kind of document


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_pipeline_spec_file_in_yaml_is_refused_in_one_line(tmp_path, attack):
    value, *message = ATTACKS[attack]
    path = tmp_path / "spec.yaml"
    path.write_bytes(as_bytes(f"steps:\n  - rotate: {{limit: {value}}}\n"))
    with pytest.raises(SpecError) as caught:
        augkit.load_pipeline(path)
    assert_one_line(caught.value, str(path), *message)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_pipeline_spec_file_in_json_is_refused_in_one_line(tmp_path, attack):
    value, *message = ATTACKS[attack]
    path = tmp_path / "spec.json"
    path.write_bytes(as_bytes('{"steps": [{"rotate": {"limit": %s}}]}' % value))
    with pytest.raises(SpecError) as caught:
        augkit.load_pipeline(path)
    assert_one_line(caught.value, str(path), *JSON_MESSAGE.get(attack, message))


@pytest.mark.parametrize("attack", ATTACKS)
def test_an_inline_spec_is_refused_in_one_line(attack):
    value, *message = ATTACKS[attack]
    with pytest.raises(SpecError) as caught:
        augkit.load_pipeline(f"hflip; rotate(limit={value})")
    assert_one_line(caught.value, "inline pipeline: rotate(limit=...)", *message)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_statistics_file_is_refused_in_one_line(tmp_path, attack):
    value, *message = ATTACKS[attack]
    path = tmp_path / "stats.json"
    path.write_bytes(as_bytes('{"format": "augkit.stats/1", "count": %s}' % value))
    with pytest.raises(AugkitError) as caught:
        ChannelStats.load(path)
    assert_one_line(caught.value, str(path), *JSON_MESSAGE.get(attack, message))


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_training_config_is_refused_in_one_line(tmp_path, attack):
    value, *message = ATTACKS[attack]
    path = tmp_path / "config.yaml"
    path.write_bytes(as_bytes(f"epochs: 2\nlr: {value}\n"))
    with pytest.raises(AugkitError) as caught:
        TrainConfig.load(path)
    assert_one_line(caught.value, f"{path}:2:", *message)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_set_value_is_refused_in_one_line(attack):
    value, *message = ATTACKS[attack]
    with pytest.raises(DocumentError) as caught:
        parse_assignment(f"lr={value}")
    assert_one_line(caught.value, "--set lr", *message)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_grid_value_is_refused_in_one_line(attack):
    value, *message = ATTACKS[attack]
    with pytest.raises(DocumentError) as caught:
        parse_grid([f"lr=0.1|{value}"], TrainConfig())
    assert_one_line(caught.value, "--grid lr", *message)


# ----------------------------------------------------------------------------- the limits themselves


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_nesting_up_to_the_limit_reads_and_one_level_more_is_refused(fmt):
    depth = documents.MAX_DEPTH
    assert parse_document("[" * depth + "]" * depth, source="d", format=fmt) == _nested(depth)
    with pytest.raises(DocumentError, match=f"d: nested more than {depth} levels deep"):
        parse_document("[" * (depth + 1) + "]" * (depth + 1), source="d", format=fmt)


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_yaml_nesting_by_indentation_is_measured_too():
    # "- - - x" nests a level per dash on one line, with no bracket anywhere.
    block = "- " * 100_000 + "x\n"
    with pytest.raises(DocumentError, match="nested more than 64 levels deep"):
        parse_document(block, source="block")
    indented = "".join("  " * i + "- \n" for i in range(70))  # one level per line, by indentation
    with pytest.raises(DocumentError, match="nested more than 64 levels deep"):
        parse_document(indented, source="indented")


def test_an_alias_that_carries_depth_counts_its_depth():
    inner = "[" * 40 + "]" * 40
    assert parse_document(f"a: &x {inner}\nb: *x", source="s")["b"] == _nested(40)
    with pytest.raises(DocumentError, match=r"alias \*x nests more than 64 levels deep \(line 2, column 35\)"):
        parse_document(f"a: &x {inner}\nb: [{'[' * 30}*x{']' * 30}]", source="s")


def test_anchors_that_share_values_within_the_limit_read_as_yaml_does():
    text = "base: &b {lr: 0.1, hidden: [64, 64]}\nruns: [*b, *b, {<<: *b, lr: 0.2}]\n"
    assert parse_document(text, source="s") == yaml.safe_load(text)


def test_an_alias_inside_its_own_anchor_is_refused_not_built_as_an_endless_list():
    with pytest.raises(DocumentError, match=r"alias \*a lies inside its own anchor \(column 8\)"):
        parse_document("&a [1, *a]", source="s")


def test_the_alias_bomb_is_measured_in_characters_not_nodes():
    # One anchor of a 100 kB string, named 20 times: 2 MB written out, though only 21 nodes.
    text = "a: &s " + "x" * 100_000 + "\nb: [" + ", ".join(["*s"] * 20) + "]\n"
    with pytest.raises(DocumentError, match="expand to more than 1 MiB"):
        parse_document(text, source="s")


def test_numbers_are_bounded_but_long_strings_of_digits_in_quotes_are_text():
    assert parse_document("a: '%s'" % ("9" * 5000), source="s") == {"a": "9" * 5000}
    assert parse_document('{"a": "%s"}' % ("9" * 5000), source="s", format="json") == {"a": "9" * 5000}
    assert parse_document("a: " + "9" * 100, source="s") == {"a": int("9" * 100)}
    for text in ("a: " + "1" * 101, "a: 0." + "1" * 120, "a: !!int '%s'" % ("1" * 200), "a: " + "1:" * 60 + "1"):
        with pytest.raises(DocumentError, match="a number written with"):
            parse_document(text, source="s")


def test_json_brackets_and_quotes_inside_strings_are_not_nesting():
    text = json.dumps({"path": "a[[[[" * 100 + '\\"' * 50, "n": [1, {"k": "}}}}" * 100}]})
    assert parse_document(text, source="s", format="json") == json.loads(text)


def test_documents_over_the_size_limit_are_refused_before_they_are_parsed(tmp_path, monkeypatch):
    path = tmp_path / "big.yaml"
    path.write_text("a: [" + "1, " * 500_000 + "1]\n")  # 1.5 MB
    with pytest.raises(DocumentError, match=re.escape(f"{path}: the training config is larger than the limit of 1 MiB")):
        read_document(path, what="training config")
    monkeypatch.setattr(documents, "MAX_BYTES", 2 << 20)  # a program that needs more raises it
    assert read_document(path) == {"a": [1] * 500_001}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("dup.yaml", "steps:\n  - crop: {size: 24, size: 25}\n", ":2:22: the key 'size' appears twice in one mapping"),
        ("dup.yaml", "seed: 1\nsteps: [hflip]\nseed: 2\n", ":3:1: the key 'seed' appears twice in one mapping"),
        ("dup.json", '{"steps": [{"crop": {"size": 24, "size": 25}}]}', ": the key 'size' appears twice in one object"),
    ],
)
def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DocumentError, match=re.escape(f"{path}{message}")):
        read_document(path)


def test_yaml_merge_keys_are_not_taken_for_keys_given_twice(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {size: 8, p: 1}\nsteps:\n  - crop: {<<: *b, size: 3}\n  - rotate: {<<: *b}\n")
    assert read_document(path)["steps"] == [{"crop": {"size": 3, "p": 1}}, {"rotate": {"size": 8, "p": 1}}]


def test_a_byte_order_mark_is_allowed_and_other_bytes_must_be_utf8(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_document(path) == {"a": 1}
    path.write_bytes(b'{"a": 1}\n{"b": "\xe9t\xe9"}')  # Latin-1, as an old editor saves it
    with pytest.raises(DocumentError, match=re.escape(f"{path}:2:8: byte 0xe9 is not UTF-8; save the document as UTF-8")):
        read_document(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1, 2", r"not valid YAML: the '\[' list is never closed \(column 4\); expected ',' or '\]' by the end"),
        ("a: *nowhere", r"not valid YAML: alias \*nowhere has no anchor \(column 4\); write &nowhere before it"),
        ("? [1]\n: 2", r"found unhashable key \(line 1, column 3\), in the mapping that starts at line 1, column 1"),
        ("a: 2024-13-45", r"cannot read '2024-13-45' as a date \(month must be in 1..12\) \(column 4\)"),
        ("a: !!int ten", r"cannot read 'ten' as an integer \(invalid literal for int"),
        ("a: !!python/object:os.system {}", "could not determine a constructor .*; augkit reads plain YAML"),
    ],
)
def test_yaml_that_the_parser_or_its_constructors_refuse_is_one_line(text, message):
    with pytest.raises(DocumentError, match=message) as caught:
        parse_document(text, source="doc")
    assert_one_line(caught.value, "doc")


def test_syntax_errors_are_their_own_kind_so_set_can_keep_plain_text():
    with pytest.raises(DocumentSyntaxError) as caught:
        parse_document("{a: [1}", source="s")
    assert pickle.loads(pickle.dumps(caught.value)).reason == caught.value.reason  # as from a worker
    assert parse_assignment("augment=@crop: {size") == ("augment", "@crop: {size")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_named_like_a_document_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match=re.escape(f"{fifo}: the pipeline spec is a FIFO, not a regular file")):
        augkit.load_pipeline(fifo)
    with pytest.raises(DocumentError, match="is a directory, not a regular file"):
        read_document(tmp_path)


def test_a_missing_file_is_worded_by_each_caller(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_document(tmp_path / "none.yaml")
    with pytest.raises(SpecError, match="pipeline file not found"):
        augkit.load_pipeline(tmp_path / "none.yaml")
    with pytest.raises(AugkitError, match="config file .* not found"):
        TrainConfig.load(tmp_path / "none.yaml")


# ----------------------------------------------------------------------------- the command line, in real processes


def run_augkit(*args: str | bytes, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "augkit", *args], capture_output=True, cwd=cwd, timeout=300,
    )  # fmt: skip


def assert_cli_refuses(result: subprocess.CompletedProcess, *fragments: str) -> None:
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_preview_refuses_an_alias_bomb_spec_in_one_line(tmp_path):
    (tmp_path / "bomb.yaml").write_text(f"steps:\n  - rotate: {{limit: {alias_bomb()}}}\n")
    result = run_augkit("preview", "-p", "bomb.yaml", "-o", "sheet.png", cwd=tmp_path)
    assert_cli_refuses(result, "bomb.yaml:2:", "its aliases expand to more than 1 MiB")
    assert not (tmp_path / "sheet.png").exists()


def test_train_refuses_a_deep_config_in_one_line(tmp_path):
    (tmp_path / "bomb.yaml").write_text(f"lr: {DEEP}\n")
    result = run_augkit("train", "--config", "bomb.yaml", "-o", "run", cwd=tmp_path)
    assert_cli_refuses(result, "bomb.yaml:1:", "nested more than 64 levels deep")
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_stats_file_with_a_5000_digit_count_in_one_line(tmp_path):
    (tmp_path / "bomb.json").write_text('{"format": "augkit.stats/1", "count": %s}' % ("9" * 5000))
    result = run_augkit("train", "--stats", "bomb.json", "--epochs", "1", "-q", "-o", "run", cwd=tmp_path)
    assert_cli_refuses(result, "bomb.json:1:", "a number written with 5000 characters; the limit is 100")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_refuses_a_set_value_that_is_not_utf8_in_one_line(tmp_path):
    result = run_augkit("train", "--set", b"data=digits\xff", "-o", "run", cwd=tmp_path)
    assert_cli_refuses(result, "--set data: byte 0xff is not UTF-8 (column 7)")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        (DEEP, "nested more than 64 levels deep; the limit is 64; remove"),
        ("[]", "is not an ablation plan (damaged?); remove"),
        ('{"studies": 5}', "is not an ablation plan (damaged?); remove"),
    ],
)
def test_ablate_refuses_a_damaged_plan_in_its_out_in_one_line_before_training(tmp_path, plan, expected):
    out = tmp_path / "ablation"
    out.mkdir()
    (out / "plan.json").write_text(plan)
    result = CliRunner().invoke(cli, ["ablate", "--grid", "dropout=0,0.5", "--epochs", "1", "--seeds", "1", "-o", str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert f"{out / 'plan.json'}" in result.output and expected in result.output, result.output
    assert "Traceback" not in result.output and not (out / "runs").exists()


# ----------------------------------------------------------------------------- where and why, for every file read


# Mistakes people make writing YAML and JSON by hand -> the one line that says where and why.
# Positions are 1-based line:column; none of PyYAML's jargon ("while parsing a flow mapping").
YAML_MISTAKES = [
    ("steps:\n  - crop: {size: 24, padding: 2\n  - hflip\n",
     ":2:11: not valid YAML: the '{' mapping that starts here is never closed; expected ',' or '}' by the end"),
    ("steps: [hflip, vflip\n", ":1:8: not valid YAML: the '[' list that starts here is never closed; expected ',' or ']' by the end"),
    ("steps:\n\t- hflip\n", ":2:1: not valid YAML: found a tab; YAML indents with spaces, never tabs"),
    ("steps: [hflip]\n  seed: 3\n", ":2:3: not valid YAML: did not find expected key, in the mapping that starts at "
     "line 1, column 1; check this line's indentation against the lines above"),
    ("steps:\n  - hflip\n - vflip\n", ":3:2: not valid YAML: did not find expected key, in the mapping that starts at "
     "line 1, column 1; check this line's indentation against the lines above"),
    ("steps:\n  - rotate: {limit: 'ten}\n", ":2:21: not valid YAML: the quoted text that starts here is never closed"),
    ("seed: 2024-13-45\nsteps: [hflip]\n", ":1:7: cannot read '2024-13-45' as a date (month must be in 1..12)"),
    ("seed: 1\nsteps: [hflip]\nseed: 2\n", ":3:1: the key 'seed' appears twice in one mapping"),
    ("steps: [*flip]\n", ":1:9: not valid YAML: alias *flip has no anchor; write &flip before it"),
    ("steps: [@hflip]\n", ":1:9: not valid YAML: found '@', which cannot start a value; put the value in quotes"),
]  # fmt: skip
JSON_MISTAKES = [
    ('{"steps": [\n  {"hflip": {}},\n]}\n', ":3:1: not valid JSON: expecting value; JSON allows no comma before ']'"),
    ('{"steps": [{"hflip": {}}]', ":1:1: not valid JSON: the '{' that starts here is never closed; expecting ',' delimiter by the end"),
    ("{'steps': []}", ":1:2: not valid JSON: expecting property name enclosed in double quotes; JSON strings take double quotes"),
    ('{"steps": [], // no steps\n}', ":1:15: not valid JSON: expecting property name enclosed in double quotes; JSON has no comments"),
    ('{"seed": tru}', ":1:10: not valid JSON: expecting value; JSON's words are true, false and null"),
    ('{"steps": ["hflip]}', ":1:12: not valid JSON: the string that starts here is never closed; end it with '\"'"),
    ("", ": not valid JSON: it is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), YAML_MISTAKES)
def test_a_yaml_mistake_is_named_at_its_line_and_column_in_plain_words(tmp_path, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(DocumentError) as caught:
        read_document(path)
    assert_one_line(caught.value, f"{path}{message}")
    assert "while parsing" not in str(caught.value) and "while scanning" not in str(caught.value)


@pytest.mark.parametrize(("text", "message"), JSON_MISTAKES)
def test_a_json_mistake_is_named_at_its_line_and_column_in_plain_words(tmp_path, text, message):
    path = tmp_path / "spec.json"
    path.write_text(text)
    with pytest.raises(DocumentError) as caught:
        read_document(path)
    assert_one_line(caught.value, f"{path}{message}")


def test_a_value_typed_on_the_command_line_gives_the_position_after_the_reason():
    with pytest.raises(DocumentSyntaxError) as caught:
        parse_document("{steps: [hflip", source="--set augment")
    assert str(caught.value) == "--set augment: not valid YAML: the '[' list is never closed (column 9); expected ',' or ']' by the end"
    assert caught.value.reason == "line 1, column 9: the '[' list is never closed; expected ',' or ']' by the end"


def _packed(root: Path) -> None:
    root.mkdir()
    (root / "manifest.json").write_text('{"format": "augkit.preprocess/1",\n "complete": tru}')


# Each kind of file augkit reads, and how a program or command reads it: a broken one is
# named with its path, the line and column, and the reason. (name, write it, read it, the line's head)
READERS = {
    "pipeline spec (YAML)": ("p.yaml", "steps:\n  - crop: {size: 24\n", augkit.load_pipeline, "p.yaml:2:11: not valid YAML"),
    "pipeline spec (JSON)": ("p.json", '{"steps": [{"crop": {"size": 24}}]', augkit.load_pipeline, "p.json:1:1: not valid JSON"),
    "albumentations file": ("a.json", '{"__version__": "2.0.8", "transform": {"__class_fullname__": "Compose"\n'
                            ' "transforms": []}}', augkit.load_pipeline, "a.json:2:2: not valid JSON: expecting ',' delimiter"),
    "training config": ("c.yaml", "epochs: 3\nlr: [0.1\n", TrainConfig.load, "c.yaml:2:5: not valid YAML"),
    "statistics file": ("s.json", '{"format": "augkit.stats/1",\n "count": 5,,}', ChannelStats.load, "s.json:2:13: not valid JSON"),
    "standardize's stats": ("s.json", '{"format": "augkit.stats/1",\n "count": 5,,}',
                            lambda p: augkit.load_pipeline({"steps": [{"standardize": {"stats": str(p)}}]}),
                            "s.json:2:13: not valid JSON"),
    "packed manifest": ("packed", _packed, augkit.open_dataset, "packed/manifest.json: not valid JSON (line 2, column 14"),
}  # fmt: skip


@pytest.mark.parametrize("kind", READERS)
def test_every_kind_of_file_augkit_reads_names_the_path_the_position_and_the_reason(tmp_path, kind):
    name, content, read, head = READERS[kind]
    path = tmp_path / name
    content(path) if callable(content) else path.write_text(content)
    with pytest.raises(AugkitError) as caught:
        read(path)
    assert_one_line(caught.value, f"{tmp_path}/{head}")


def test_preview_says_where_a_pipeline_file_is_broken_in_one_line(tmp_path):
    # The example: "while parsing a flow mapping", and no line number.
    (tmp_path / "aug.yaml").write_text("steps:\n  - crop: {size: 24, padding: 2\n  - hflip\n")
    result = run_augkit("preview", "-p", "aug.yaml", "-o", "sheet.png", cwd=tmp_path)
    assert_cli_refuses(
        result, "aug.yaml:2:11: not valid YAML: the '{' mapping that starts here is never closed; expected ',' or '}' by the end"
    )
    assert not (tmp_path / "sheet.png").exists()


def test_train_says_where_a_config_is_broken_in_one_line(tmp_path):
    (tmp_path / "config.yaml").write_text("epochs: 3\nmodel:\tmlp\nhidden: [64, 64\n")
    result = run_augkit("train", "--config", "config.yaml", "-o", "run", cwd=tmp_path)
    assert_cli_refuses(result, "config.yaml:3:9: not valid YAML: the '[' list that starts here is never closed")
    assert not (tmp_path / "run").exists()
