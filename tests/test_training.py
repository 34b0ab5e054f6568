"""The main job end to end on a tiny synthetic set: files, metrics, falling loss, no overwrite."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from Functions.errors import UserError
from Functions.training import TrainConfig, train


@pytest.mark.backend
def test_train_writes_every_file_and_loss_falls(tiny_pairs_dir, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(tiny_pairs_dir), image_size=32, epochs=4, batch_size=4, out=str(out),
                      model_options={"base_filters": 8, "depth": 2}, learning_rate=5e-3, verbose=0)
    result = train(cfg)
    for name in ("model.keras", "history.csv", "metrics.json", "curves.png", "predictions.png", "report.md",
                 "config.json", "split.json", "test_metrics.csv"):
        assert (out / name).is_file(), name
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["epoch"]) == [0, 1, 2, 3]
    assert hist["loss"].iloc[-1] < hist["loss"].iloc[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["dice"] <= 1 and 0 <= metrics["iou"] <= metrics["dice"] + 1e-9
    per_image = pd.read_csv(out / "test_metrics.csv")
    assert len(per_image) == metrics["n_images"] == 2
    assert metrics["dice"] == pytest.approx(per_image["dice"].mean())
    assert "![Training curves](curves.png)" in (out / "report.md").read_text()
    # the same folder again: refused, and the first run is untouched
    before = (out / "model.keras").read_bytes()
    with pytest.raises(UserError, match="already holds files"):
        train(cfg)
    assert (out / "model.keras").read_bytes() == before


def test_cli_bad_input_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "Functions", "train", "--data", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: data folder") and "Traceback" not in proc.stderr
    assert not (tmp_path / "missing").exists()


def test_config_validation():
    with pytest.raises(UserError, match="--epochs"):
        TrainConfig(epochs=0).validate()
    with pytest.raises(UserError, match="not both"):
        TrainConfig(data="a", dataset="b").validate()
