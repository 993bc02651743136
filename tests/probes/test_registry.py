"""Probes by name: the registry imports a probe's module on first use and names the ones there are."""

from __future__ import annotations

import sys

import pytest
from omegaconf import OmegaConf

from bert_ner_probe.errors import UserError
from bert_ner_probe.probes.base import FeatureProbe, ProbeInputs
from bert_ner_probe.probes.registry import available, build, model_class, register


def test_every_probe_of_the_package_is_found_by_name():
    assert set(available()) >= {"bilstm", "linear", "mlp", "finetune"}
    assert model_class("finetune").fine_tunes_encoder and not model_class("linear").fine_tunes_encoder


def test_an_unknown_probe_is_one_user_error_listing_the_probes():
    with pytest.raises(UserError, match=r"probe.name='lstm': no such probe \(there are: bilstm, .*finetune, linear, mlp"):
        model_class("lstm")


def test_a_name_registered_twice_by_different_classes_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        @register("linear")
        class Other(FeatureProbe):
            pass


def test_a_probe_outside_the_package_is_one_module_named_by_its_path(tmp_path, monkeypatch):
    (tmp_path / "my_probes").mkdir()
    (tmp_path / "my_probes" / "__init__.py").write_text("")
    (tmp_path / "my_probes" / "constant.py").write_text(
        "import torch\n"
        "from bert_ner_probe.probes.base import FeatureProbe\n"
        "from bert_ner_probe.probes.registry import register\n\n"
        "@register('my_probes.constant')\n"
        "class Constant(FeatureProbe):\n"
        "    def __init__(self, n):\n"
        "        super().__init__(n)\n"
        "        self.bias = torch.nn.Parameter(torch.zeros(n))\n"
        "    @classmethod\n"
        "    def from_config(cls, cfg, inputs):\n"
        "        return cls(inputs.num_labels)\n"
        "    def word_scores(self, x):\n"
        "        return self.bias.expand(x.shape[:-1] + (self.num_labels,))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    probe = build(OmegaConf.create({"name": "my_probes.constant"}), ProbeInputs(num_labels=4, width=3))
    assert type(probe).__name__ == "Constant" and probe.num_labels == 4
    sys.modules.pop("my_probes.constant", None)
