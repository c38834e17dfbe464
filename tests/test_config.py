"""Config layering, override parsing and one-line errors."""

import pytest

from searchkit.config import ConfigError, changed_identity, load_config, parse_override


def test_defaults_preset_and_overrides():
    cfg = load_config(["space=channels", "algo=tpe", "trials=7", "algo.n_startup_trials=3"])
    assert cfg.space.model == "resnet56"  # from spaces/channels.yaml
    assert cfg.constraint == {"flops": 0.5}  # from the preset
    assert cfg.algo.name == "tpe" and cfg.algo.n_startup_trials == 3 and cfg.algo.multivariate
    assert cfg.trials == 7 and cfg.study_name == "channels-resnet56-digits-tpe"


def test_values_are_yaml():
    assert parse_override("objectives=[accuracy,flops]") == ("objectives", ["accuracy", "flops"])
    assert parse_override("timeout=1.5") == ("timeout", 1.5)
    assert load_config(["constraint.flops=60M"]).constraint["flops"] == 60e6
    assert load_config(["constraint.params=40%"]).constraint["params"] == pytest.approx(0.4)


@pytest.mark.parametrize("override, message", [
    ("trails=3", "did you mean 'trials'"),
    ("algo=abcd", "did you mean 'abc'"),
    ("space=chanels", "did you mean 'channels'"),
    ("space.model=resnet57", "did you mean 'resnet56'"),
    ("data=digit", "did you mean 'digits'"),
    ("trials=many", "trials must be int"),
    ("noequals", "expected key=value"),
    ("space.keep=[0.5,0.2]", "increasing fractions"),
    ("constraint.flops=-1", "must be positive"),
    ("pruner=medain", "did you mean 'median'"),
    ("objectives=[flops]", "must start with accuracy"),
    ("trials=[1", "bad value"),
])
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as err:
        load_config([override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_yaml_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "broken.yaml").write_text("trials: [1, 2\nseed: 3\n")
    with pytest.raises(ConfigError, match="malformed YAML in .*broken.yaml"):
        load_config(["study=broken"])
    (tmp_path / "studies" / "mine.yaml").write_text("trials: 4\nspace:\n  model: resnet20\n")
    cfg = load_config(["study=mine", "trials=5"])
    assert cfg.space.model == "resnet20" and cfg.trials == 5  # command line beats the recipe


@pytest.mark.parametrize("override, message", [
    ("algo.food_numbr=3", "unknown key 'algo.food_numbr' for algo=abc; did you mean 'algo.food_number'?"),
    ("space.kep=[0.5,1.0]", "unknown key 'space.kep' for space=channels; did you mean 'space.keep'?"),
    ("constraint.flop=0.3", "unknown key 'constraint.flop'; did you mean 'constraint.flops'?"),
    ("objectives=[accuracy,flop]", "objectives: unknown cost 'flop'; did you mean 'flops'?"),
    ("algo.food_number=many", "algo.food_number must be int"),
    ("executor=rey", "unknown executor 'rey'; did you mean 'ray'?"),
])
def test_component_options_are_typed_and_checked(override, message):
    """Space, algo and constraint keys come from the chosen component's options dataclass and
    the cost registry; a typo names the nearest valid key."""
    with pytest.raises(ConfigError) as err:
        load_config([override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_options_keep_their_alias_and_stored_layouts():
    a = load_config(["space=tinynet", "space.options.r=[0.5,1.0,0.25]"])
    b = load_config(["space=tinynet", "space.r=[0.5,1.0,0.25]"])
    assert a == b and a.space.r == (0.5, 1.0, 0.25)
    # a study stored by searchkit 0.1: options under space.options, generic space keys, latency_ms
    old = {**a.to_dict(), "space": {"name": "tinynet", "model": "efficientnet_b0", "keep": [0.5, 1.0],
                                    "rule": "l1", "options": {"r": [0.5, 1.0, 0.25]}},
           "constraint": {"flops": 0.25, "params": None, "latency_ms": None}}
    assert load_config([], base=old) == a
    assert load_config(["constraint.latency_ms=3", "latency.target=x"]).constraint["latency"] == 3.0


def test_identity_changes():
    a = load_config(["trials=3"])
    assert changed_identity(a, load_config(["trials=9", "device=cpu"])) == []
    assert changed_identity(a, load_config(["space.model=resnet20"])) == ["space.model"]
