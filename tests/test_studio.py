"""``augkit studio``'s server: its API through Starlette's test client (real pipelines, real
sample photos), what it refuses (paths out of its folders, other hosts, malformed requests), and
the command in a real process (URL printed, Ctrl-C, a port in use). The page itself is driven in
a real browser by tests/test_studio_browser.py."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings

import numpy as np
import pytest
import yaml

pytest.importorskip("starlette")
pytest.importorskip("httpx")
with warnings.catch_warnings():  # Starlette 1.x prefers the httpx2 fork; httpx serves every Starlette release
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient  # noqa: E402

import augkit  # noqa: E402
from augkit.io.datasets import sample_data_dir  # noqa: E402
from augkit.pipeline.registry import list_steps  # noqa: E402
from augkit.stats import ChannelStats  # noqa: E402
from augkit.studio.app import allowed_hosts, create_app  # noqa: E402
from augkit.studio.controls import step_controls  # noqa: E402
from augkit.studio import session  # noqa: E402
from augkit.studio.session import MAX_STEPS, Studio  # noqa: E402

PHOTOS = sample_data_dir() / "photos"
CLI = [sys.executable, "-m", "augkit"]


def client(inputs=(), spec="rotate(limit=20, p=1); hflip", *, spec_dir=None, base_dir=None) -> TestClient:
    pipeline = augkit.load_pipeline(spec, base_dir=base_dir)
    studio = Studio(list(inputs), pipeline, spec_dir=spec_dir, rows=2, n=2)
    return TestClient(create_app(studio, allowed_hosts("127.0.0.1")), base_url="http://127.0.0.1")


def sheet_body(steps, **options):
    return {"pipeline": {"seed": 0, "steps": steps}, "n": 2, "rows": 2, "epoch": 0, "sample_seed": 0, **options}


def png_of(answer: dict) -> bytes:
    head, data = answer["png"].split(",", 1)
    assert head == "data:image/png;base64"
    return base64.b64decode(data)


@pytest.fixture(scope="module")
def photos_client() -> TestClient:
    return client([PHOTOS])


# ----------------------------------------------------------------------------- the API


def test_state_gives_the_start_pipeline_in_the_pages_form(photos_client):
    state = photos_client.get("/api/state").json()
    assert state["steps"] == [{"name": "rotate", "params": {"limit": 20, "p": 1}}, {"name": "hflip", "params": {}}]
    assert state["seed"] == 0 and state["can_resample"] is True
    assert state["options"] == {"n": 2, "rows": 2, "epoch": 0, "sample_seed": 0}


def test_steps_lists_every_registered_step_augkits_first(photos_client):
    steps = photos_client.get("/api/steps").json()["steps"]
    names = [s["name"] for s in steps]
    assert names == list_steps("augkit") + list_steps("albumentations")
    assert next(s for s in steps if s["name"] == "rotate")["summary"].startswith("Rotate by an angle")


@pytest.mark.parametrize("name", list_steps())
def test_every_step_has_a_control_for_every_parameter(name):
    described = step_controls(name)
    assert described["parameters"], name  # p at least
    for parameter in described["parameters"]:
        kind = parameter["control"]
        assert kind in ("checkbox", "select", "slider", "range", "number", "text"), parameter
        if kind in ("slider", "range"):
            assert parameter["low"] < parameter["high"] and parameter["step"] > 0, parameter
            assert parameter["integer"] == (parameter["step"] == 1 and "float" not in parameter["type"]), parameter
        if kind == "select":
            assert len(parameter["choice_labels"]) == len(parameter["choices"]) > 0, parameter
    json.dumps(described)  # JSON as it is served


def test_controls_of_the_lectures_steps():
    rotate = {p["name"]: p for p in step_controls("rotate")["parameters"]}
    assert (rotate["limit"]["control"], rotate["limit"]["low"], rotate["limit"]["high"]) == ("range", -360, 360)
    assert rotate["limit"]["scalar"] and rotate["limit"]["pair"]
    assert (rotate["p"]["control"], rotate["p"]["step"]) == ("slider", 0.01)
    assert rotate["border"]["control"] == "select" and rotate["border"]["choices"] == ["constant", "reflect", "replicate"]
    affine = {p["name"]: p for p in step_controls("Affine")["parameters"]}
    assert affine["interpolation"]["choice_labels"][1] == "1 (INTER_LINEAR)"
    assert affine["fit_output"]["control"] == "checkbox"
    assert step_controls("OneOf")["composition"] is True


def test_unknown_step_is_404_with_augkits_message(photos_client):
    answer = photos_client.get("/api/steps/Rotat")
    assert answer.status_code == 404
    assert "unknown step 'Rotat'" in answer.json()["errors"][0]["message"]


def test_the_sheet_is_the_png_augkit_preview_writes_byte_for_byte(tmp_path):
    steps = [{"name": "crop", "params": {"size": 0.8, "mode": "random_resized"}}, {"name": "rotate", "params": {"limit": [-30, 10]}},
             {"name": "RandomGamma", "raw": {"gamma_limit": "[70, 130]"}}, {"name": "hflip"}]  # fmt: skip
    studio = client([PHOTOS])
    answer = studio.post("/api/sheet", json=sheet_body(steps, n=3, epoch=5, sample_seed=7)).json()
    assert answer["ok"] and answer["ms"] >= 0
    exported = studio.post("/api/export", json={"pipeline": {"seed": 0, "steps": steps}}).json()
    (tmp_path / exported["filename"]).write_text(exported["yaml"])
    command = answer["command"].split()
    assert command[:2] == ["augkit", "preview"] and "--epoch" in command
    subprocess.run([*CLI, *command[1:], "-o", "sheet.png"], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "sheet.png").read_bytes() == png_of(answer)
    assert [s["label"] for s in answer["sources"]] == ["chelsea.jpg", "rocket.jpg"]  # sampled with seed 7


def test_stages_show_one_image_after_each_step(photos_client):
    steps = [{"name": "rotate", "params": {"limit": 20, "p": 1}}, {"name": "hflip", "params": {"p": 0}}]
    variants = photos_client.post("/api/sheet", json=sheet_body(steps)).json()
    stages = photos_client.post("/api/sheet", json=sheet_body(steps, stages=1)).json()
    assert stages["command"] is None and stages["sources"] == variants["sources"]
    assert png_of(stages) != png_of(variants)
    bad = photos_client.post("/api/sheet", json=sheet_body(steps, stages=9))
    assert bad.status_code == 400 and "'stages' must be a row" in bad.json()["errors"][0]["message"]


def test_every_invalid_step_is_reported_at_its_parameter(photos_client):
    steps = [{"name": "rotate", "params": {"limit": 500}}, {"name": "hflip"}, {"name": "crop", "raw": {"size": "[30"}},
             {"name": "Blur", "params": {"blur_limitt": 3}}, {"name": "GaussNoise", "params": {"p": 2}}, {"name": "Nope"}]  # fmt: skip
    answer = photos_client.post("/api/sheet", json=sheet_body(steps))
    assert answer.status_code == 422
    errors = {e["step"]: e for e in answer.json()["errors"]}
    assert set(errors) == {0, 2, 3, 4, 5}
    assert errors[0]["key"] == "limit" and "within [-360, 360]" in errors[0]["message"]
    assert errors[2]["key"] == "size" and "never closed" in errors[2]["message"]
    assert errors[3]["key"] == "blur_limitt" and "did you mean 'blur_limit'" in errors[3]["message"]
    assert errors[4]["key"] == "p" and "probability in [0, 1]" in errors[4]["message"]
    assert errors[5]["key"] is None and "unknown step 'Nope'" in errors[5]["message"]
    assert all("Traceback" not in e["message"] and "\n" not in e["message"] for e in errors.values())


def test_a_step_that_fails_on_these_images_is_placed_at_the_step(photos_client):
    steps = [{"name": "hflip"}, {"name": "RandomCrop", "params": {"height": 4000, "width": 4000}}]
    answer = photos_client.post("/api/sheet", json=sheet_body(steps))
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["step"] == 1 and "RandomCrop" in error["message"], error


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ("not json", 400, "not JSON"),
        ([], 400, "must be a JSON object"),
        ({"pipeline": {"steps": "hflip"}}, 400, "'steps', a list"),
        ({"pipeline": {"steps": [{"name": 3}]}}, 400, "steps[0] must be"),
        ({"pipeline": {"steps": [{"name": "hflip", "raw": {"p": 1}}]}}, 400, "raw values are the text typed"),
        ({"pipeline": {"steps": []}, "n": 0}, 422, "variants must be a whole number from 1 to 32"),
        ({"pipeline": {"steps": [], "seed": -1}}, 422, "the seed must be a whole number"),
    ],
)
def test_malformed_requests_get_one_line(photos_client, body, status, says):
    if isinstance(body, str):
        answer = photos_client.post("/api/sheet", content=body, headers={"Content-Type": "application/json"})
    else:
        answer = photos_client.post("/api/sheet", json=body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["errors"][0]["message"]


def test_posts_must_be_json_and_small(photos_client):
    form = photos_client.post("/api/sheet", content=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    huge = photos_client.post("/api/import", json={"text": "x" * (5 * 2**20)})
    assert huge.status_code == 413 and "larger than 4 MiB" in huge.json()["errors"][0]["message"]


def test_other_hosts_are_refused(photos_client):
    assert photos_client.get("/api/state", headers={"Host": "attacker.example"}).status_code == 400
    assert photos_client.get("/api/state", headers={"Host": "localhost:8000"}).status_code == 200
    assert allowed_hosts("0.0.0.0") == ["*"]


# ----------------------------------------------------------------------------- export and import


def test_export_is_yaml_that_loads_as_the_same_pipeline(photos_client):
    steps = [{"name": "rotate", "params": {"limit": [-5, 25], "p": 0.9}}, {"name": "OneOf", "raw": {"transforms": "[Blur, {GaussNoise: {p: 1}}]"}}]
    answer = photos_client.post("/api/export", json={"pipeline": {"seed": 3, "steps": steps}}).json()
    assert answer["filename"] == "pipeline.yaml"
    loaded = augkit.load_pipeline(yaml.safe_load(answer["yaml"]))
    assert loaded.seed == 3 and loaded.steps == ["rotate", "OneOf"]
    assert augkit.load_pipeline(answer["inline"], seed=3).to_spec() == loaded.to_spec()  # inline: steps only


def test_export_names_stats_files_by_absolute_path(tmp_path, write_png):
    write_png(tmp_path / "data" / "a" / "x.png", (np.arange(48, dtype=np.uint8).reshape(4, 4, 3)))
    ChannelStats(3).update(np.arange(48, dtype=np.uint8).reshape(1, 4, 4, 3)).save(tmp_path / "data" / "stats.json")
    studio = client([tmp_path / "data"], "hflip", base_dir=tmp_path / "data", spec_dir=tmp_path / "data")
    steps = [{"name": "standardize", "raw": {"stats": "stats.json"}}]
    answer = studio.post("/api/export", json={"pipeline": {"steps": steps}})
    assert answer.status_code == 200, answer.text
    assert yaml.safe_load(answer.json()["yaml"])["steps"] == [{"standardize": {"stats": str(tmp_path / "data" / "stats.json")}}]
    sheet = studio.post("/api/sheet", json=sheet_body(steps)).json()  # its title names the file as the export does
    assert sheet["inline"] == answer.json()["inline"] == f"standardize(stats={tmp_path / 'data' / 'stats.json'})"


def test_import_reads_yaml_json_albumentations_and_inline(photos_client, tmp_path):
    from augkit.pipeline._albumentations import A

    yaml_text = "seed: 4\nsteps:\n  - rotate: {limit: 10}\n  - hflip\n"
    answer = photos_client.post("/api/import", json={"text": yaml_text, "name": "aug.yaml"}).json()
    assert answer == {"ok": True, "steps": [{"name": "rotate", "params": {"limit": 10}}, {"name": "hflip", "params": {}}],
                      "seed": 4, "compile": True, "targets": None, "warnings": []}  # fmt: skip
    as_json = photos_client.post("/api/import", json={"text": json.dumps({"steps": ["vflip"]}), "name": "a.json"}).json()
    assert as_json["steps"] == [{"name": "vflip", "params": {}}]
    saved = tmp_path / "alb.json"
    A.save(A.Compose([A.HorizontalFlip(p=0.3)]), str(saved))
    albumentations = photos_client.post("/api/import", json={"text": saved.read_text(), "name": "alb.json"}).json()
    assert albumentations["steps"][0]["name"] == "HorizontalFlip" and albumentations["steps"][0]["params"]["p"] == 0.3
    assert "carries no seed" in albumentations["warnings"][0]
    inline = photos_client.post("/api/import", json={"text": "crop(size=24); hflip(p=0.2)"}).json()
    assert [s["name"] for s in inline["steps"]] == ["crop", "hflip"]


def test_import_of_a_bad_spec_says_what_is_wrong(photos_client):
    answer = photos_client.post("/api/import", json={"text": "steps:\n  - rotate: {limit: x}\n", "name": "aug.yaml"})
    assert answer.status_code == 422
    assert "rotate" in answer.json()["errors"][0]["message"] and "limit" in answer.json()["errors"][0]["message"]


# ----------------------------------------------------------------------------- reading only under the roots


@pytest.mark.parametrize(
    "path",
    ["/static/../studio/app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/%2e%2e/%2e%2e/pyproject.toml",
     "/api/steps/..%2f..%2fetc%2fpasswd", "/static//etc/passwd", "/static/../../../../etc/passwd"],
)  # fmt: skip
def test_no_request_path_reaches_a_file_outside_the_static_folder(photos_client, path):
    answer = photos_client.get(path)
    assert answer.status_code == 404, (path, answer.status_code)
    assert "import" not in answer.text and "root:" not in answer.text


def test_the_page_and_every_script_module_it_loads_are_served(photos_client):
    """index.html's module and each module it imports, with a JavaScript type (a browser refuses
    to run a module script served as anything else), and the style sheet."""
    page = photos_client.get("/")
    assert page.status_code == 200
    pending = re.findall(r'<script type="module" src="static/([\w.]+)"', page.text)
    assert pending == ["main.js"]
    served = set()
    while pending:
        name = pending.pop()
        answer = photos_client.get(f"/static/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript"), (name, answer.headers)
        served.add(name)
        pending += set(re.findall(r'^import .* from "\./([\w.]+)";$', answer.text, re.MULTILINE)) - served
    assert {"main.js", "api.js", "sheet.js", "steps.js"} <= served
    assert photos_client.get("/static/studio.css").status_code == 200


@pytest.fixture
def confined(tmp_path, write_png):
    """A dataset folder with a symlink to an image outside it, and a stats file outside it."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    pixels = np.zeros((8, 8, 3), np.uint8)
    for name in ("a", "b"):
        write_png(data / "cls" / f"{name}.png", pixels + 50)
    write_png(outside / "secret.png", pixels + 200)
    (data / "cls" / "link.png").symlink_to(outside / "secret.png")
    ChannelStats(3).update(pixels[None] + 50).save(outside / "stats.json")
    (data / "stats-link.json").symlink_to(outside / "stats.json")
    return data, outside


def test_a_dataset_file_linked_from_outside_its_folder_is_never_shown(confined):
    data, _ = confined
    studio = client([data])
    for sample_seed in range(6):
        answer = studio.post("/api/sheet", json=sheet_body([], rows=3, sample_seed=sample_seed)).json()
        assert sorted(s["label"] for s in answer["sources"]) == ["cls/a.png", "cls/b.png"]


@pytest.mark.parametrize("stats", ["../outside/stats.json", "ABSOLUTE", "stats-link.json"])
def test_a_stats_file_outside_the_folders_is_refused(confined, stats):
    data, outside = confined
    stats = str(outside / "stats.json") if stats == "ABSOLUTE" else stats
    studio = client([data], "hflip", base_dir=data, spec_dir=data)
    for route, body in [("/api/sheet", sheet_body([{"name": "standardize", "params": {"stats": stats}}])),
                        ("/api/import", {"text": f"standardize(stats={stats})"})]:  # fmt: skip
        answer = studio.post(route, json=body)
        assert answer.status_code == 422, answer.text
        assert "outside the folders augkit studio reads" in answer.json()["errors"][0]["message"]
    inside = studio.post("/api/sheet", json=sheet_body([{"name": "standardize", "raw": {"stats": "../data/cls/../stats-ok.json"}}]))
    assert "outside the folders" not in inside.text  # inside the folder: refused only for not existing
    assert "stats-ok.json" in inside.json()["errors"][0]["message"]


def test_import_never_opens_a_path_it_is_given(photos_client, tmp_path):
    secret = tmp_path / "aug.yaml"
    secret.write_text("steps: [hflip]\n")
    answer = photos_client.post("/api/import", json={"text": str(secret)})
    assert answer.status_code == 422  # read as an inline spec, not as the file it names
    assert "is not a step" in answer.json()["errors"][0]["message"]


# ----------------------------------------------------------------------------- the command


def _start(*args, cwd=None):
    process = subprocess.Popen([*CLI, "studio", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    line = process.stdout.readline()
    assert line.startswith("augkit studio: http://127.0.0.1:"), line + process.stderr.read()
    return process, line.split()[2]


def test_the_command_serves_and_stops_on_ctrl_c():
    process, url = _start("-p", "rotate(limit=5); hflip", "--rows", "2")
    try:
        with urllib.request.urlopen(url + "api/state", timeout=30) as response:
            state = json.load(response)
        assert [s["name"] for s in state["steps"]] == ["rotate", "hflip"] and state["options"]["rows"] == 2
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "api/state", timeout=5)


def test_a_port_in_use_and_bad_inputs_are_one_line_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = [["--port", port], [str(tmp_path / "missing")], ["-p", "rotat"], ["--host", "no-such-host.invalid"]]
        for args in cases:
            result = subprocess.run([*CLI, "studio", *args], capture_output=True, text=True, timeout=60)
            assert result.returncode == 2, (args, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def test_without_uvicorn_it_says_what_to_install():
    code = ("import sys; sys.modules['uvicorn'] = None\n"
            "from augkit.cli.main import main; sys.argv = ['augkit', 'studio']; main()")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "pip install starlette uvicorn" in result.stderr



# ----------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("body", "says"),
    [("[" * 5000 + "]" * 5000, "nested more than 64 levels deep"),  # json.loads: RecursionError, a 500
     ('{"pipeline": {"steps": [], "seed": 1' + "0" * 5000 + "}}", "a number written with 5001 characters"),
     (b"\xff\xfe{}", "not UTF-8")],
)  # fmt: skip
def test_a_body_past_the_document_limits_is_one_line_400(photos_client, body, says):
    answer = photos_client.post("/api/sheet", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["errors"]
    assert says in error["message"] and "\n" not in error["message"]


def test_a_file_name_that_is_not_utf8_is_shown_escaped(tmp_path, write_png):
    name = os.fsdecode(b"r\xe9\xff.png")  # Linux keeps any bytes; the studio sees surrogates
    try:
        write_png(tmp_path / "data" / name, np.full((8, 8, 3), 90, np.uint8))
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    studio = client([tmp_path / "data"])
    answer = studio.post("/api/sheet", json=sheet_body([], n=1, rows=1))
    assert answer.status_code == 200, answer.text  # was a 500: UTF-8 cannot encode a surrogate
    assert answer.json()["sources"][0]["label"] == name  # \udcXX escapes, which JSON parsers read back


def test_more_steps_than_the_limit_are_refused_before_anything_runs(photos_client):
    too_many = MAX_STEPS + 1
    flat = photos_client.post("/api/sheet", json=sheet_body([{"name": "hflip"}] * too_many))
    assert flat.status_code == 422 and f"got {too_many}" in flat.json()["errors"][0]["message"]
    children = "[" + ", ".join(["hflip"] * too_many) + "]"
    composition = [{"name": "OneOf", "raw": {"transforms": children}}]
    nested = photos_client.post("/api/sheet", json=sheet_body(composition, stages=0))
    (error,) = nested.json()["errors"]
    assert nested.status_code == 422 and (error["step"], error["key"]) == (0, "transforms"), error
    imported = photos_client.post("/api/import", json={"text": "steps:\n" + "  - hflip\n" * too_many, "name": "a.yaml"})
    assert imported.status_code == 422 and f"at most {MAX_STEPS} steps" in imported.json()["errors"][0]["message"]
    at_the_limit = photos_client.post("/api/sheet", json=sheet_body([{"name": "hflip"}] * MAX_STEPS, n=1, rows=1))
    assert at_the_limit.status_code == 200, at_the_limit.text


def test_a_compositions_child_error_is_placed_at_its_transforms_text(photos_client):
    steps = [{"name": "OneOf", "raw": {"transforms": "[{hflip: {p: 3}}]"}},  # p: the child's, not OneOf's own p
             {"name": "OneOf", "params": {"p": 3}, "raw": {"transforms": "[hflip]"}},
             {"name": "SomeOf", "raw": {"transforms": "[{standardize: {stats: /etc/passwd}}]"}}]  # fmt: skip
    errors = photos_client.post("/api/sheet", json=sheet_body(steps)).json()["errors"]
    assert [(e["step"], e["key"]) for e in errors] == [(0, "transforms"), (1, "p"), (2, "transforms")], errors


@pytest.mark.parametrize("stats", ["a\x00b.json", "LOOP", "missing.json"])
def test_a_stats_file_that_cannot_be_read_is_placed_at_stats(tmp_path, stats):
    (tmp_path / "loop.json").symlink_to(tmp_path / "loop.json")  # resolve(): RuntimeError on 3.11, a 500
    studio = client([PHOTOS], "hflip", base_dir=tmp_path, spec_dir=tmp_path)
    stats = str(tmp_path / "loop.json") if stats == "LOOP" else stats
    answer = studio.post("/api/sheet", json=sheet_body([{"name": "standardize", "params": {"stats": stats}}]))
    assert answer.status_code == 422 and answer.json()["errors"][0]["key"] == "stats", answer.text
    spec = json.dumps({"steps": [{"standardize": {"stats": stats}}]})
    imported = studio.post("/api/import", json={"text": spec, "name": "a.json"})
    assert imported.status_code == 422, imported.text


def test_compile_must_be_a_bool(photos_client):
    answer = photos_client.post("/api/sheet", json={"pipeline": {"steps": [], "compile": "no"}})
    assert answer.status_code == 422 and "'compile' must be true or false" in answer.json()["errors"][0]["message"]


def test_unrouted_api_requests_are_json(photos_client):
    missing = photos_client.get("/api/nope")
    assert missing.status_code == 404 and missing.json()["ok"] is False
    wrong_method = photos_client.get("/api/sheet")
    assert wrong_method.status_code == 405 and "Method Not Allowed" in wrong_method.json()["errors"][0]["message"]
    assert wrong_method.headers["allow"] == "POST"
    assert photos_client.get("/static/nope.js").headers["content-type"].startswith("text/plain")


def test_decoded_samples_are_kept_within_a_byte_budget(monkeypatch):
    studio = Studio([PHOTOS], augkit.load_pipeline("hflip"), rows=2)
    for seed in range(4):
        studio.sources(6, seed)
    assert len(studio._samples) == 5  # the start draw and four more: under the count and the budget
    monkeypatch.setattr(session, "_CACHED_BYTES", 1)
    latest = studio.sources(6, 9)
    assert list(studio._samples) == [(6, 9)] and len(latest) == 6  # the draw asked for always stays


def test_a_host_name_idna_cannot_encode_is_one_line_exit_2():
    result = subprocess.run([*CLI, "studio", "--host", "a" * 300], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot serve there" in result.stderr


def test_a_symlink_loop_in_a_dataset_is_passed_over(tmp_path, write_png):
    for name in ("a", "b"):
        write_png(tmp_path / "data" / "cls" / f"{name}.png", np.full((8, 8, 3), 90, np.uint8))
    (tmp_path / "data" / "cls" / "zz.png").symlink_to(tmp_path / "data" / "cls" / "zz.png")
    answer = client([tmp_path / "data"]).post("/api/sheet", json=sheet_body([], rows=3)).json()
    assert sorted(s["label"] for s in answer["sources"]) == ["cls/a.png", "cls/b.png"]


def test_a_normalisation_with_another_channel_count_is_shown_stretched(photos_client):
    steps = [{"name": "Normalize", "params": {"mean": [0.5, 0.5], "std": [0.2, 0.2], "p": 1}}]
    assert photos_client.post("/api/sheet", json=sheet_body(steps)).status_code == 200


def test_a_parameter_called_name_is_an_unknown_parameter(photos_client):
    answer = photos_client.post("/api/sheet", json=sheet_body([{"name": "HorizontalFlip", "params": {"name": "x"}}]))
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["key"] == "name" and "unknown parameter 'name'" in answer.json()["errors"][0]["message"]


def test_big_outputs_are_kept_at_their_drawn_size():
    from augkit.preview import TILE, build_rows, collect_sources

    sources = collect_sources([PHOTOS / "rocket.jpg"], rows=1, seed=0)
    (row,) = build_rows(augkit.load_pipeline("Resize(height=2000, width=3000)"), sources, n=3, stages=False)
    for tile in row[1:]:
        assert max(tile.image.shape[:2]) <= TILE and tile.size == (2000, 3000)


def test_ctrl_c_does_not_wait_for_a_sheet_being_drawn():
    # Minutes of work (32 variants of 3000 x 3000 elastic warps): Ctrl-C must end the process, not wait.
    process, url = _start("--rows", "4")
    body = sheet_body([{"name": "Resize", "params": {"height": 3000, "width": 3000}}, {"name": "ElasticTransform", "params": {"p": 1}}],
                      n=32, rows=4)  # fmt: skip
    request = urllib.request.Request(url + "api/sheet", json.dumps(body).encode(), {"Content-Type": "application/json"})
    answers = []

    def ask():
        try:
            answers.append(urllib.request.urlopen(request, timeout=120).status)
        except urllib.error.HTTPError as error:
            answers.append(error.code)
        except OSError:
            answers.append(None)

    import threading

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    try:
        time.sleep(3)  # the sheet is being drawn
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    asking.join(timeout=10)
    assert process.returncode == 0 and "stopped" in out, err
    assert "Traceback" not in err, err
    assert answers in ([503], [None]), answers


def test_a_specs_targets_go_through_the_page_and_into_the_export():
    declared = {"bboxes": {"format": "coco", "min_visibility": 0.3}}
    studio = client([PHOTOS], {"seed": 0, "targets": declared, "steps": ["hflip"]})
    state = studio.get("/api/state").json()
    assert state["targets"] == declared
    body = {"pipeline": {"seed": 0, "targets": state["targets"], "steps": [{"name": "hflip"}]}}
    assert studio.post("/api/sheet", json={**sheet_body([]), **body}).status_code == 200
    assert yaml.safe_load(studio.post("/api/export", json=body).json()["yaml"])["targets"] == declared
    bad = studio.post("/api/sheet", json={**sheet_body([]), "pipeline": {**body["pipeline"], "targets": {"boxes": {}}}})
    assert bad.status_code == 422 and "unknown target 'boxes'" in bad.json()["errors"][0]["message"]
    imported = studio.post("/api/import", json={"text": yaml.safe_dump({"targets": declared, "steps": ["vflip"]}), "name": "a.yaml"})
    assert imported.json()["targets"] == declared
    assert client([PHOTOS]).get("/api/state").json()["targets"] is None
