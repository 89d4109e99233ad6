import pytest

from riskcast.config import RiskcastConfig, load_config
from riskcast.errors import ConfigError


def test_defaults_load_without_a_file():
    cfg = load_config(None)
    assert isinstance(cfg, RiskcastConfig)
    assert cfg.training.horizon_months == 12


def test_toml_overrides_and_keeps_the_rest(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[training]\nhorizon_months = 6\n[training.lightgbm]\nnum_leaves = 7\n")
    cfg = load_config(p)
    assert cfg.training.horizon_months == 6
    assert cfg.training.lightgbm.num_leaves == 7
    assert cfg.training.lightgbm.learning_rate == RiskcastConfig().training.lightgbm.learning_rate


@pytest.mark.parametrize("text, key", [
    ("[training]\nhorizn_months = 6\n", "training.horizn_months"),
    ("[training]\nhorizon_months = 0\n", "training.horizon_months"),
    ("[policy]\nrefer_margin = 2\n", "policy.refer_margin"),
    ("[policy.limit_share_of_revenue]\nA = 0.5\nB = 0.1\nC = 0.1\nD = 0.1\nE = 0\n", "policy"),
    ("[generator]\nscenario = 'boom'\n", "generator.scenario"),
])
def test_invalid_settings_are_rejected_naming_the_key(tmp_path, text, key):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert key in str(e.value)


def test_master_scale_must_increase_and_end_at_one(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[[master_scale.grades]]\ngrade='1'\npd_max=0.5\nband='A'\n[[master_scale.grades]]\ngrade='2'\npd_max=0.4\nband='E'\n")
    with pytest.raises(ConfigError, match="increase"):
        load_config(p)


def test_missing_and_broken_files_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    p = tmp_path / "bad.toml"
    p.write_text("[training\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)
