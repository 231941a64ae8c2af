"""The configuration: every key declared once, config/default.toml generated from it, every bad key one line."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import fields

import pytest

from stackcue.dsp.params import PipelineParams
from stackcue.dsp.settings import spec_of
from stackcue.errors import ConfigError
from stackcue.service.config import CHOICES, DEFAULT_PATH, RANGES, load_config
from stackcue.service.settings import SCHEMA, defaults, render_toml, specs


def write(tmp_path, text: str):
    p = tmp_path / "user.toml"
    p.write_text(text)
    return p


def test_documented_defaults_are_the_code_defaults():
    assert load_config().pipeline == PipelineParams()


def test_shipped_default_toml_is_the_generated_one():
    # regenerate with: python -m stackcue.service.settings > config/default.toml
    assert DEFAULT_PATH.read_text(encoding="utf-8") == render_toml()


def test_shipped_default_toml_holds_the_declared_defaults_with_their_types():
    shipped = tomllib.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    assert shipped == defaults()
    for section, keys in defaults().items():
        assert list(shipped[section]) == list(keys)
        for key, value in keys.items():
            assert type(shipped[section][key]) is type(value), f"{section}.{key}"


def test_generator_module_prints_the_file():
    r = subprocess.run([sys.executable, "-m", "stackcue.service.settings"], capture_output=True, check=True)
    assert r.stdout.decode("utf-8") == render_toml()


def test_pipeline_sections_are_declared_with_their_dataclasses():
    declared = {s.name: s.cls for s in SCHEMA}
    for f in fields(PipelineParams):  # [cue] holds the cue client's keys too (settings.CueKeys)
        assert declared[f.name] is f.default_factory or (
            f.name == "cue" and issubclass(declared[f.name], f.default_factory)
        )


def test_ranges_and_choices_come_from_the_declarations():
    assert RANGES == {k: s.range for k, s in specs().items() if s.range}
    assert CHOICES == {k: s.choices for k, s in specs().items() if s.choices}
    assert set(RANGES) & set(CHOICES) == set()


def test_every_default_is_allowed():
    for section, keys in defaults().items():
        for key, value in keys.items():
            full = f"{section}.{key}"
            if full in RANGES:
                lo, hi = RANGES[full]
                assert lo <= value <= hi, full
            if full in CHOICES:
                assert value in CHOICES[full], full


def test_every_key_is_documented_and_its_choices_named():
    for s in SCHEMA:
        for f in fields(s.cls):
            spec = spec_of(f)
            text = spec.doc + " ".join(s.doc)
            assert text, f"{s.name}.{f.name} has no doc"
            for choice in spec.choices or ():
                if isinstance(choice, str) and spec.doc != "likewise":
                    assert f'"{choice}"' in text, f"{s.name}.{f.name}: choice {choice!r} is not in its doc"


def test_design_fixed_defaults():
    a = load_config().pipeline.alerts
    assert a.anterior_tilt_deg == 6.0 and a.posterior_tilt_deg == 6.0 and a.confirm_strides == 3
    r = load_config().pipeline.reference  # issue 17: tilt from the run's own baseline, the stack from standing
    assert (r.mode, r.pelvic_tilt, r.trunk_lean, r.stack) == ("per_metric", "first_minutes", "neutral", "neutral")


def test_every_default_key_has_a_comment_with_its_meaning():
    for n, line in enumerate(DEFAULT_PATH.read_text().splitlines(), 1):
        s = line.strip()
        if "=" in s and not s.startswith("#") and not s.startswith("enabled") and not s.startswith("mode"):
            assert "#" in s, f"default.toml:{n} has no comment: {s}"


def test_user_file_overrides_key_by_key(tmp_path):
    cfg = load_config(write(tmp_path, "[alerts]\nanterior_tilt_deg = 7\n"))
    p = cfg.pipeline
    assert p.alerts.anterior_tilt_deg == 7.0
    assert p.alerts.posterior_tilt_deg == 6.0  # untouched neighbour
    assert p.gait == PipelineParams().gait


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[alerts]\nanterior_tilt = 7\n",
            "unknown key 'alerts.anterior_tilt' (did you mean 'alerts.anterior_tilt_deg'?)",
        ),
        ("[alert]\nx = 1\n", "unknown key 'alert' (did you mean 'alerts'?)"),
        ("[alerts]\nconfirm_strides = 'three'\n", "alerts.confirm_strides must be an integer, got 'three'"),
        ("[alerts]\nconfirm_strides = 2.5\n", "alerts.confirm_strides must be an integer, got 2.5"),
        ("[alerts]\nconfirm_strides = 0\n", "alerts.confirm_strides = 0 is out of range 1..100"),
        ("[alerts]\nanterior_tilt_deg = true\n", "alerts.anterior_tilt_deg must be a number, got True"),
        (
            "[reference]\nmode = 'habit'\n",
            "reference.mode = 'habit' is not one of per_metric, neutral, first_minutes, targets",
        ),
        ("[alerts]\nenabled = ['slouch']\n", "alerts.enabled has unknown alert kind 'slouch'"),
        ("alerts = 3\n", "'alerts' must be a [section]"),
        ("[runner]\nid = 'a b'\n", "runner.id = 'a b' must be 1-64 letters"),
        ("[gait]\nmin_cadence_spm = 250.0\nmax_cadence_spm = 200.0\n", "gait.min_cadence_spm must be below"),
        ("[alerts\n", "invalid TOML"),
        ("[mqtt]\nprefix = 'stackcue/#'\n", "mqtt.prefix = 'stackcue/#' must be a topic without wildcards"),
        ("[mqtt]\nprefix = 'x/{runner}'\n", "{runner_id} is the only placeholder"),
    ],
)
def test_bad_user_config_is_one_line_naming_the_key(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert message in msg and str(p) in msg and "\n" not in msg


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml")


def test_cli_reports_config_error_without_traceback(tmp_path):
    p = write(tmp_path, "[alerts]\nconfirm_stride = 3\n")
    csv = tmp_path / "x.csv"
    csv.write_text("t,ax,ay,az,gx,gy,gz\n0,0,0,9.81,0,0,0\n")
    r = subprocess.run(
        [sys.executable, "-m", "stackcue", "analyze", str(csv), "--config", str(p)], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "unknown key 'alerts.confirm_stride'" in r.stderr and "Traceback" not in r.stderr
