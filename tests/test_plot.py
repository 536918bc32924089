"""Tests for plot.py: two fake runs give one PNG with the expected panels; bad input gives one clear error line."""
import json
import math

import pytest

import plot


def write_run(folder, n_steps, scale, extra_lines=""):
    folder.mkdir(parents=True)
    rows = []
    for step in range(1, n_steps + 1):
        row = {"step": step, "tokens_per_s": 100.0 * scale, "time/propose": 2.0, "time/update": 1.0 + step * 0.01,
               "phase": "done"}  # a non-numeric value is ignored
        for role in ("propose", "solve"):
            for task in ("deduction", "abduction", "induction"):
                row[f"{role}/{task}/reward"] = scale * math.sin(step / 5) - 0.2
                row[f"{role}/{task}/response_len"] = 300 + 10 * step
            row[f"{role}/deduction/valid_rate" if role == "propose" else f"{role}/deduction/accuracy"] = step / n_steps
        rows.append(json.dumps(row))
    (folder / "metrics.jsonl").write_text("\n".join(rows) + "\n" + extra_lines)
    return folder


def test_two_runs_make_a_png(tmp_path):
    a = write_run(tmp_path / "paper", 30, 1.0)
    b = write_run(tmp_path / "no_propose", 20, 0.5)
    out = tmp_path / "plots" / "curves.png"
    assert plot.main([str(a), str(b), "--out", str(out), "--smooth", "0.6"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temp file


def test_panels_group_by_metric_name(tmp_path):
    runs = {"a": plot.load_metrics(write_run(tmp_path / "a", 5, 1.0)),
            "b": plot.load_metrics(write_run(tmp_path / "b", 3, 1.0))}
    panels = plot.collect_series(runs, None)
    assert set(panels) == {"reward", "response_len", "valid_rate", "accuracy", "time", "tokens_per_s"}
    assert len(panels["reward"]) == 6 * 2  # (role, task) x runs
    assert set(panels["time"]) == {("propose", "a"), ("update", "a"), ("propose", "b"), ("update", "b")}
    steps, values = panels["accuracy"][("solve/deduction", "b")]
    assert steps == [1, 2, 3] and values == pytest.approx([1 / 3, 2 / 3, 1.0])
    # --keys patterns select keys, not panels.
    only = plot.collect_series(runs, ["solve/*/reward", "tokens_per_s"])
    assert set(only) == {"reward", "tokens_per_s"} and len(only["reward"]) == 3 * 2


def test_booleans_and_strings_are_not_curves():
    # only int/float values become series: a bool (an int to Python) or a string key is left out
    panels = plot.collect_series({"r": [{"step": 1, "loss": 0.5, "resumed": True, "phase": "propose"}]}, None)
    assert set(panels) == {"loss"} and panels["loss"][("", "r")] == ([1], [0.5])


def test_smooth():
    assert plot.smooth([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
    # Debiased EMA: a constant stays constant, a step is approached gradually.
    assert plot.smooth([4.0] * 5, 0.9) == pytest.approx([4.0] * 5)
    s = plot.smooth([0.0, 10.0, 10.0], 0.5)
    assert s[0] == 0.0 and 0 < s[1] < s[2] < 10
    assert math.isnan(plot.smooth([1.0, float("nan"), 1.0], 0.5)[1])


def test_smooth_skips_infinite_points():
    # inf (a diverged metric) is drawn where it is but never enters the average: the points after it stay finite
    assert plot.smooth([1.0, float("inf"), 1.0, float("-inf"), 1.0], 0.5) == [1.0, float("inf"), 1.0, float("-inf"),
                                                                             1.0]


def test_keys_filter_and_title(tmp_path):
    a = write_run(tmp_path / "a", 10, 1.0)
    out = tmp_path / "acc.png"
    assert plot.main([str(a), "--out", str(out), "--keys", "*/accuracy", "--title", "solver accuracy"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def error_of(capsys, argv):
    assert plot.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("plot.py: error: ")
    return err


def test_a_metrics_file_is_taken_for_its_run(tmp_path):
    """A run's metrics.jsonl given instead of its folder (said "does not exist" of a file that exists): the same
    rows, and the legend names the run folder."""
    a = write_run(tmp_path / "paper", 5, 1.0)
    assert plot.load_metrics(a / "metrics.jsonl") == plot.load_metrics(a)
    assert plot.run_names([a / "metrics.jsonl", tmp_path / "other"]) == ["paper", "other"]
    assert plot.main([str(a / "metrics.jsonl"), "--out", str(tmp_path / "c.png")]) == 0


def test_missing_folder(tmp_path, capsys):
    err = error_of(capsys, [str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")])
    assert "nope does not exist" in err


def test_folder_without_metrics(tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    err = error_of(capsys, [str(tmp_path / "empty_run"), "--out", str(tmp_path / "x.png")])
    assert "metrics.jsonl not found" in err


def test_malformed_line_names_file_and_line(tmp_path, capsys):
    run = write_run(tmp_path / "bad", 4, 1.0)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = '{"step": 3, "solve/deduction/reward": 0.5'  # truncated object in the middle
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    err = error_of(capsys, [str(run), "--out", str(tmp_path / "x.png")])
    assert "bad/metrics.jsonl line 3: not valid JSON" in err
    assert not (tmp_path / "x.png").exists()


def test_line_without_step(tmp_path, capsys):
    run = write_run(tmp_path / "nostep", 2, 1.0, extra_lines='{"solve/deduction/reward": 1.0}\n')
    err = error_of(capsys, [str(run), "--out", str(tmp_path / "x.png")])
    assert "nostep/metrics.jsonl line 3: expected a JSON object with a numeric 'step' key" in err
    run2 = write_run(tmp_path / "list", 1, 1.0, extra_lines="[1, 2]\n")
    assert "list/metrics.jsonl line 2" in error_of(capsys, [str(run2), "--out", str(tmp_path / "x.png")])


def test_unfinished_last_line_of_live_run_is_skipped(tmp_path, capsys):
    run = write_run(tmp_path / "live", 3, 1.0, extra_lines='{"step": 4, "solve/ded')  # no trailing newline
    assert len(plot.load_metrics(run)) == 3
    assert "line 4 is incomplete" in capsys.readouterr().err


def test_no_matching_keys_and_bad_smoothing(tmp_path, capsys):
    a = write_run(tmp_path / "a", 3, 1.0)
    assert "no numeric metric matches --keys foo/*" in error_of(
        capsys, [str(a), "--out", str(tmp_path / "x.png"), "--keys", "foo/*"])
    assert "--smooth must be in [0, 1)" in error_of(capsys, [str(a), "--out", str(tmp_path / "x.png"),
                                                             "--smooth", "1.5"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text("\n")
    assert "has no metrics yet" in error_of(capsys, [str(empty), "--out", str(tmp_path / "x.png")])


def test_duplicate_run_names_use_full_paths(tmp_path):
    assert plot.run_names([tmp_path / "x" / "run", tmp_path / "y" / "run"]) == [
        str(tmp_path / "x" / "run"), str(tmp_path / "y" / "run")]
    assert plot.run_names(["a/run1", "b/run2"]) == ["run1", "run2"]


def test_run_name_of_a_folder_without_a_name():
    # "." (or "/") has no folder name: the legend shows the path as given
    assert plot.run_names([".", "runs/a", "runs/b/"]) == [".", "a", "b"]


def test_bad_out_path(tmp_path, capsys):
    a = write_run(tmp_path / "a", 3, 1.0)
    assert "cannot write .xyz images; use one of" in error_of(capsys, [str(a), "--out", str(tmp_path / "c.xyz")])
    assert "names no file" in error_of(capsys, [str(a), "--out", ""])
    assert "names no file" in error_of(capsys, [str(a), "--out", str(tmp_path)])
    assert plot.main([str(a), "--out", str(tmp_path / "c.svg")]) == 0
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")


def test_series_of_one_panel_never_share_a_colour(tmp_path):
    # azr.py's real keys: 7 time/<phase> labels beside 9 role/task and buffer labels; i % 10 over all labels gave
    # time/learnability and time/update one colour. Each label keeps one colour in every panel it appears in.
    row = {"step": 1, **{f"time/{p}": 1.0 for p in ("propose", "validate", "learnability", "solve", "verify",
                                                    "update", "step")}}
    for task in ("deduction", "abduction", "induction"):
        row.update({f"propose/{task}/reward": -1.0, f"solve/{task}/reward": -1.0, f"solve/{task}/accuracy": 0.0,
                    f"buffer/{task}/size": 1})
    panels = plot.collect_series({"r": [row]}, None)
    colours = plot.series_colours(panels)
    for name, series in panels.items():
        used = [colours[label] for label, _ in series]
        assert len(set(used)) == len(used), name
    assert set(colours.values()) <= set(range(10))


def test_a_run_of_one_step_is_drawn(tmp_path, monkeypatch):
    # a line through one point draws nothing: a run's first step (or a one-step ablation) gets a dot
    import matplotlib.axes
    drawn = []
    original = matplotlib.axes.Axes.plot

    def record(self, *args, **kwargs):
        drawn.append((len(args[0]), kwargs.get("marker")))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    a, b = write_run(tmp_path / "a", 1, 1.0), write_run(tmp_path / "b", 3, 1.0)
    assert plot.main([str(a), str(b), "--out", str(tmp_path / "c.png"), "--keys", "tokens_per_s"]) == 0
    assert sorted(drawn) == [(1, "o"), (3, None)]


def test_grid_cells_without_a_panel_are_hidden(tmp_path, monkeypatch):
    # 4 panels on a 2 x 3 grid: the 2 cells past the last panel show no empty axes
    import matplotlib.axes
    hidden = []
    original = matplotlib.axes.Axes.set_visible

    def record(self, visible):
        hidden.append(visible)
        return original(self, visible)
    monkeypatch.setattr(matplotlib.axes.Axes, "set_visible", record)
    a = write_run(tmp_path / "a", 3, 1.0)
    keys = ["*/reward", "*/accuracy", "*/valid_rate", "tokens_per_s"]
    assert plot.main([str(a), "--out", str(tmp_path / "four.png"), "--keys", *keys]) == 0
    assert hidden.count(False) == 2
    hidden.clear()
    assert plot.main([str(a), "--out", str(tmp_path / "three.png"), "--keys", *keys[:3]]) == 0
    assert hidden.count(False) == 0
