from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from core import config as C
from core.errors import UserError


@dataclass
class Cfg(C.BaseConfig):
    lr: float = C.param(0.01, "learning rate", min=0.0, max=1.0)
    width: int = C.param(8, "hidden units", min=1, arch=True)
    kind: Literal["a", "b"] = C.param("a", "a choice")
    name: str = C.param("x", "a name", choices=["x", "y"])
    sizes: list[int] = C.param([1, 2], "sizes", min=1)
    flag: bool = C.param(False, "a switch")
    maybe: Optional[float] = C.param(None, "optional")


def test_defaults_and_yaml_strings_are_coerced():
    cfg = C.from_dict(Cfg, {"lr": "1e-3", "width": "16", "flag": "true", "sizes": "3,4", "maybe": "2"})
    assert cfg.lr == 1e-3 and cfg.width == 16 and cfg.flag is True and cfg.sizes == [3, 4]
    assert cfg.maybe == 2.0 and cfg.kind == "a"
    assert C.from_dict(Cfg, {"sizes": "[5, 6]"}).sizes == [5, 6]
    assert C.from_dict(Cfg, {"maybe": "null"}).maybe is None


@pytest.mark.parametrize("key,value,needle", [
    ("lr", "abc", "--lr: expected float in [0.0, 1.0]"),
    ("lr", 2.0, "--lr: expected float in [0.0, 1.0]"),
    ("width", 0, "--width: expected int >= 1"),
    ("width", 1.5, "--width: expected int"),
    ("width", True, "--width: expected int"),
    ("kind", "c", "--kind: expected one of a, b"),
    ("name", "z", "--name: expected one of x, y"),
    ("sizes", "1,0", "--sizes"),
    ("flag", "maybe", "--flag: expected bool"),
])
def test_bad_values_name_the_key_and_what_is_allowed(key, value, needle):
    with pytest.raises(UserError) as err:
        C.from_dict(Cfg, {key: value})
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_lists_known_keys():
    with pytest.raises(UserError, match=r"unknown config key\(s\) widht.*known keys: .*width"):
        C.from_dict(Cfg, {"widht": 3}, source="preset.yaml")


def test_to_dict_round_trip_and_arch_keys():
    cfg = C.from_dict(Cfg, {"lr": 0.5, "sizes": [7]})
    assert C.from_dict(Cfg, C.to_dict(cfg)) == cfg
    assert C.arch_keys(Cfg) == ["width"]
    # mutable defaults are not shared between instances
    a, b = Cfg(), Cfg()
    a.sizes.append(9)
    assert b.sizes == [1, 2]


def test_load_preset_errors(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        C.load_preset(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        C.load_preset(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        C.load_preset(lst)


def test_help_table_lists_every_key_with_default():
    text = C.help_table(Cfg)
    for key in ("--lr", "--width", "--kind", "--sizes", "--seed", "--steps"):
        assert key in text
    assert "default 0.01" in text and "[architecture]" in text


def test_derived_keys_stay_out_of_the_saved_config():
    @dataclass
    class Derived(C.BaseConfig):
        epochs: int = C.param(2, "epochs", min=1)
        steps: int = C.param(0, "derived", min=0, derived=True)

        def check(self):
            self.steps = 10 * self.epochs

    cfg = C.from_dict(Derived, {"epochs": 3})
    assert cfg.steps == 30 and C.to_dict(cfg)["steps"] == 30
    assert "steps" not in C.to_dict(cfg, derived=False)


def test_presets_inherit(tmp_path):
    (tmp_path / "base.yaml").write_text("model: m\nlr: 0.1\nsteps: 5\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/child.yaml").write_text("inherit: ../base.yaml\nlr: 0.2\n")
    assert C.load_preset(tmp_path / "sub/child.yaml") == {"model": "m", "lr": 0.2, "steps": 5}
    (tmp_path / "loop.yaml").write_text("inherit: loop.yaml\n")
    with pytest.raises(UserError, match="inherits from itself"):
        C.load_preset(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("inherit: gone.yaml\n")
    with pytest.raises(UserError, match="inherited by"):
        C.load_preset(tmp_path / "orphan.yaml")
    thesis = C.load_preset("configs/nrflv_thesis_pairs.yaml")
    assert thesis["stimulus_sets"] == ["pairs"] and thesis["num_it_neg"] == 500
