"""benchmarks/step_time.py: times a stage's real steps, and its split accounts for the whole step."""

import importlib.util
import json
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("step_time", Path(__file__).parents[1] / "benchmarks" / "step_time.py")
step_time = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(step_time)


def test_step_time_debug_vlm(tmp_path):
    out = tmp_path / "st.json"
    assert step_time.main(["vlm", "preset=debug", "stage.batch_size=3", "--steps", "2", "--warmup", "1", "--threads", "1",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["batch_size"] == 3 and result["steps_timed"] == 2 and result["overrides"][-1] == "stage.batch_size=3"
    split = result["split_seconds"]
    assert set(split) == {"batch", "forward", "backward", "optimizer"} and all(v > 0 for v in split.values())
    assert sum(split.values()) == pytest.approx(result["seconds_per_step"], rel=1e-6)
    assert result["projected_minutes_for_stage_steps"] == pytest.approx(result["seconds_per_step"] * result["stage_steps"] / 60)


def test_step_time_rejects_no_steps():
    with pytest.raises(SystemExit):
        step_time.main(["vlm", "--steps", "0"])
