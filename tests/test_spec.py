"""The project spec: defaults, the commented template, overrides, and errors that name file, line and field."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lmwright.errors import SpecError
from lmwright.spec import DEFAULT_SPEC_TEXT, Spec, load_spec


def test_template_is_the_defaults():
    assert load_spec(None) == Spec()
    assert "# " in DEFAULT_SPEC_TEXT  # it is commented for the user


def test_unknown_field_names_line_and_suggests(tmp_path):
    p = tmp_path / "lmwright.yaml"
    p.write_text("project:\n  name: x\ntrain:\n  max_step: 3\n")
    with pytest.raises(SpecError) as e:
        load_spec(p)
    msg = str(e.value)
    assert f"{p}, line 4" in msg and "train.max_step" in msg and "did you mean 'max_steps'" in msg


def test_wrong_value_names_field_value_and_allowed(tmp_path):
    p = tmp_path / "lmwright.yaml"
    p.write_text("data:\n  clean:\n    normalize: NFD\ntrain:\n  lr: -1\n")
    msg = str(pytest.raises(SpecError, load_spec, p).value)
    assert "line 3" in msg and "data.clean.normalize = 'NFD'" in msg and "'NFC', 'NFKC' or 'none'" in msg
    assert "line 5" in msg and "train.lr = -1" in msg and "greater than 0" in msg


def test_cross_field_rules():
    msg = str(pytest.raises(SpecError, load_spec, None, ["model.n_heads=5"]).value)
    assert "--set model.n_heads: model: Value error, d_model (192) must be divisible by n_heads (5)" in msg
    with pytest.raises(SpecError, match="exceeds model.max_seq_len"):
        load_spec(None, ["train.seq_len=512"])
    with pytest.raises(SpecError, match="train split remains"):
        load_spec(None, ["split.val=0.5", "split.test=0.5"])


def test_overrides_parse_yaml_values():
    s = load_spec(None, ["train.max_steps=7", "train.lr=1e-3", "data.sources.0.modules=[json, os]",
                         "model.ffn_dim=null"])
    assert s.train.max_steps == 7 and s.train.lr == 1e-3 and s.data.sources[0].modules == ["json", "os"]


def test_override_errors_point_at_the_flag():
    msg = str(pytest.raises(SpecError, load_spec, None, ["train.max_steps=many"]).value)
    assert "--set train.max_steps" in msg
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        load_spec(None, ["train.max_steps"])


def test_yaml_syntax_error_has_line(tmp_path):
    p = tmp_path / "lmwright.yaml"
    p.write_text("train:\n  max_steps: 3\n   lr: [\n")
    with pytest.raises(SpecError, match=r"line \d+: not valid YAML"):
        load_spec(p)


def test_files_source_needs_paths():
    with pytest.raises(SpecError, match=r"data.sources.0.paths"):
        load_spec(None, ["data.sources=[{kind: files}]"])


def test_cli_prints_error_without_traceback(tmp_path):
    (tmp_path / "lmwright.yaml").write_text("model:\n  n_layer: 2\n")
    r = subprocess.run([sys.executable, "-m", "lmwright", "status", "-C", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "unknown field 'model.n_layer'" in r.stderr and "did you mean 'n_layers'" in r.stderr
    assert "Traceback" not in r.stderr


def test_init_writes_the_commented_default(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lmwright", "init", str(tmp_path / "p")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p" / "lmwright.yaml").read_text() == DEFAULT_SPEC_TEXT
    r = subprocess.run([sys.executable, "-m", "lmwright", "init", str(tmp_path / "p")], capture_output=True, text=True)
    assert r.returncode == 2 and "already exists" in r.stderr


def test_train_and_finetune_share_the_training_section_and_keep_their_keys(tmp_path):
    from lmwright.spec import FinetuneSpec, LoopSpec, TrainSpec

    assert set(LoopSpec.model_fields) <= set(TrainSpec.model_fields) & set(FinetuneSpec.model_fields)
    ft = FinetuneSpec()  # fine-tuning's optimizer and schedule: the values it was hard-coded to before
    assert (ft.optimizer, ft.schedule, ft.min_lr_ratio, ft.lr, ft.warmup_steps, ft.eval_every) == (
        "adamw", "cosine", 0.1, 2e-3, 10, 50)
    assert (TrainSpec().optimizer, TrainSpec().schedule, TrainSpec().lr) == ("muon", "wsd", 3e-3)
    p = tmp_path / "lmwright.yaml"  # a file written before the shared section loads unchanged
    p.write_text("train:\n  lr: 0.01\n  grad_accum: 2\nfinetune:\n  lr: 0.0005\n  batch_size: 4\n  precision: bf16\n")
    s = load_spec(p, ["finetune.optimizer=sgd", "finetune.schedule=constant"])
    assert (s.train.lr, s.train.grad_accum, s.finetune.lr, s.finetune.batch_size, s.finetune.precision) == (
        0.01, 2, 5e-4, 4, "bf16")
    assert (s.finetune.optimizer, s.finetune.schedule, s.train.optimizer) == ("sgd", "constant", "muon")


def test_the_batch_rule_names_its_own_section():
    msg = str(pytest.raises(SpecError, load_spec, None, ["finetune.batch_size=6", "finetune.grad_accum=4"]).value)
    assert "finetune.batch_size (6) must be divisible by finetune.grad_accum x finetune.nproc (4 x 1)" in msg
    msg = str(pytest.raises(SpecError, load_spec, None, ["train.batch_size=6", "train.grad_accum=4"]).value)
    assert "train: Value error, batch_size (6) must be divisible by grad_accum x nproc (4 x 1)" in msg
    with pytest.raises(SpecError, match="finetune.optimizer"):
        load_spec(None, ["finetune.optimizer=lion"])
