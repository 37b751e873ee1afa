"""A workdir written before a config field existed still resumes while that field keeps its default."""

import json

import pytest

from configs.default import get_config
from dl4cv_jax.choices import ConfigError
from dl4cv_jax.train.run_files import check_or_write_config, config_to_dict


def _old_workdir(tmp_path):
    """config.json as a run from before data.resize_shorter and the finetune fields wrote it."""
    saved = config_to_dict(get_config())
    del saved["data"]["resize_shorter"], saved["finetune"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    return tmp_path


def test_fields_added_since_at_their_defaults_are_no_change(tmp_path):
    workdir = _old_workdir(tmp_path)
    before = (workdir / "config.json").read_text()
    check_or_write_config(workdir, get_config())
    assert (workdir / "config.json").read_text() == before  # the run's record is left as it was


def test_a_new_field_set_away_from_its_default_is_a_change(tmp_path):
    config = get_config()
    config.finetune.freeze = "^conv1/"
    with pytest.raises(ConfigError, match=r"different config \(finetune\.freeze: None -> '\^conv1/'\)"):
        check_or_write_config(_old_workdir(tmp_path), config)


def test_a_changed_field_is_still_refused(tmp_path):
    config = get_config()
    config.optimizer.learning_rate = 0.5
    with pytest.raises(ConfigError, match=r"optimizer\.learning_rate: 0\.05 -> 0\.5"):
        check_or_write_config(_old_workdir(tmp_path), config)
