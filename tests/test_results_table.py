"""results_table: evaluated runs → one markdown row each, with the wall time when recorded."""
import json
import subprocess
import sys

from conftest import ROOT


def _eval(path, r1):
    result = {d: {"r1": r1, "r5": 2 * r1, "r10": 3 * r1, "medr": 4, "meanr": 9.5}
              for d in ("i2t", "t2i")}
    result["rsum"] = 12 * r1
    path.write_text(json.dumps(result))


def test_rows_from_eval_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _eval(run / "eval_test.json", 10.0)
    _eval(run / "eval_test_stage1.json", 5.0)
    (run / "wall_seconds").write_text("1800\n")
    (run / "wall_seconds_stage1").write_text("600\n")
    proc = subprocess.run([sys.executable, "-m", "keras_instance.cli.results_table",
                           f"--row=full, I+II={run}", f"--row=Stage I={run}:1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[2] == "| full, I+II | 10.0 | 20.0 | 30.0 | 10.0 | 20.0 | 30.0 | 120.0 | 30.0 min |"
    assert lines[3].startswith("| Stage I | 5.0 | 10.0 | 15.0 |")
    assert lines[3].endswith("| 60.0 | 10.0 min |")


def test_missing_evaluation_says_which_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "keras_instance.cli.results_table",
                           f"--row=x={tmp_path}:2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert f"--workdir={tmp_path} --split=test --stage=2" in proc.stderr
