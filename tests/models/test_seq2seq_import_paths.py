"""4.45's module paths for the seq2seq families that reuse another family's code (mT5, mBART, M2M100, Marian):
`formers.models.<family>.configuration_<family>` and `.modeling_<family>` hold the same class names as
transformers' modules of those paths."""
from __future__ import annotations

import importlib

import pytest

import formers

FAMILIES = {"mt5": ["MT5Config", "MT5Model", "MT5ForConditionalGeneration"],
            "mbart": ["MBartConfig", "MBartModel", "MBartForConditionalGeneration"],
            "m2m_100": ["M2M100Config", "M2M100Model", "M2M100ForConditionalGeneration"],
            "marian": ["MarianConfig", "MarianModel", "MarianMTModel"]}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_module_paths_match_transformers(family):
    for name in FAMILIES[family]:
        kind = "configuration" if name.endswith("Config") else "modeling"
        path = f"models.{family}.{kind}_{family}"
        theirs = importlib.import_module(f"transformers.{path}")
        ours = importlib.import_module(f"formers.{path}")
        assert hasattr(theirs, name), (path, name)  # the oracle has this name at this path
        assert getattr(ours, name) is getattr(formers, name), (path, name)
