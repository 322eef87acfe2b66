"""The adapter-share benchmark (benchmarks/adapter_share.py): SD1.5's UNet config builds the
published size on the meta device, DiffFit's stored share reproduces, and the docs quote the file."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("adapter_share", ROOT / "benchmarks" / "adapter_share.py")
adapter_share = importlib.util.module_from_spec(spec)
spec.loader.exec_module(adapter_share)
RESULTS = json.loads(adapter_share.RESULTS.read_text())


def test_sd15_unet_config_has_the_published_size_without_weights():
    unet = adapter_share.meta_unet(json.loads(adapter_share.SD15_CONFIG.read_text()))
    assert all(p.is_meta for p in unet.parameters())
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964 == RESULTS["unet_parameters"]["sd15"]


def test_difffit_share_reproduces_and_is_a_tenth_of_a_percent_or_less():
    config = json.loads(adapter_share.SD15_CONFIG.read_text())
    stored = RESULTS["rows"]["difffit"]
    assert adapter_share.trainable_share(config, "difffit", stored["options"]) == stored["trainable"]["sd15"]
    assert stored["percent"]["sd15"] < 0.1 < stored["percent"]["shapes-sd-tiny"]


def test_docs_quote_the_stored_table():
    assert adapter_share.table(RESULTS) in (ROOT / "docs" / "adapters.md").read_text()
