"""The conventions every command shares: global options, exit codes, batch inputs and outputs."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import typer

from hsiuu_cli import __version__
from hsiuu_cli.cli.app import app
from hsiuu_cli.cli.common import ErrorReportingGroup, click_errors, expand_inputs, plan_outputs, run_batch
from hsiuu_cli.errors import CubeReadError, CubeWriteError, ParameterError


def test_version_prints_on_stdout(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"hsiuu {__version__}"


def test_unknown_option_is_a_usage_error(runner):
    result = runner.invoke(app, ["--no-such-option"])
    assert result.exit_code == 2


def test_help_lists_every_command(runner):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("superres", "unmix", "fuse", "train", "evaluate", "simulate", "info", "convert"):
        assert name in result.stdout


def _tiny_app(action):
    demo = typer.Typer(cls=ErrorReportingGroup)

    @demo.command()
    def run() -> None:
        action()

    @demo.command()
    def other() -> None:
        pass

    return demo


def test_library_error_becomes_one_line_and_exit_1(runner):
    def fail():
        raise CubeReadError("truncated data file", path="scene.img")

    result = runner.invoke(_tiny_app(fail), ["run"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "scene.img" in lines[0] and "truncated data file" in lines[0]
    assert "Traceback" not in result.output


def test_quiet_still_reports_errors(runner, tmp_path):
    result = runner.invoke(app, ["-q", "info", str(tmp_path / "missing.hdr")])
    assert result.exit_code == 1
    assert "missing.hdr: file not found" in result.stderr


def test_messages_print_paths_with_brackets_as_they_are(runner, tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path / "scene[b].hdr")])
    assert result.exit_code == 1
    assert "scene[b].hdr: file not found" in result.stderr


def test_a_directory_is_not_a_cube(runner, tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 1
    assert "is a directory, not a cube" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("command", [["superres", "x.hdr", "--scale", "2"], ["unmix", "x.hdr"], ["fuse", "a.hdr", "b.tif", "--srf", "ikonos"]])
def test_unknown_device_is_a_usage_error(runner, command):
    result = runner.invoke(app, [*command, "--device", "gpu"])
    assert result.exit_code == 2
    assert "'gpu' is not auto, cpu or cuda" in result.output


def test_closed_stdout_ends_quietly():
    """`hsiuu evaluate --help | head`: the reader leaves while the help is still being written; no error
    message, no traceback (head's stdout to /dev/null; the shell pipeline is what reproduces the timing)."""
    import shlex
    import subprocess

    command = f"{shlex.quote(sys.executable)} -m hsiuu_cli evaluate --help | head -30 > /dev/null"
    for _ in range(3):
        result = subprocess.run(command, shell=True, stderr=subprocess.PIPE)
        assert result.stderr.decode() == ""


def test_unexpected_error_has_no_traceback(runner):
    def fail():
        raise RuntimeError("boom")

    result = runner.invoke(_tiny_app(fail), ["run"])
    assert result.exit_code == 1
    assert "boom" in result.stderr and "--debug" in result.stderr
    assert "Traceback" not in result.stderr


def test_expand_inputs_globs_lists_and_stdin(tmp_path, monkeypatch):
    for name in ("b.hdr", "a.hdr", "c.tif"):
        (tmp_path / name).write_text("x")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# comment\n{tmp_path / 'c.tif'}\n\n")
    found = expand_inputs([str(tmp_path / "*.hdr"), f"@{listing}"])
    assert found == [tmp_path / "a.hdr", tmp_path / "b.hdr", tmp_path / "c.tif"]

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{tmp_path / 'a.hdr'}\n{tmp_path / 'c.tif'}\n"))
    assert expand_inputs(["-"]) == [tmp_path / "a.hdr", tmp_path / "c.tif"]


def test_expand_inputs_reports_empty_glob_and_missing_list(tmp_path):
    with pytest.raises(ParameterError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.nothing")])
    with pytest.raises(ParameterError, match="missing.txt"):
        expand_inputs([f"@{tmp_path / 'missing.txt'}"])


def test_plan_outputs_templates_and_conflicts(tmp_path):
    inputs = [tmp_path / "one.hdr", tmp_path / "two.tif"]
    outputs = plan_outputs(
        inputs, output=None, out_dir=tmp_path / "out", template=None, default_template="{stem}_x4{ext}", default_ext=".hdr"
    )
    assert outputs == [tmp_path / "out" / "one_x4.hdr", tmp_path / "out" / "two_x4.hdr"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(CubeWriteError, match="existing file, not a directory"):
        plan_outputs(inputs, output=None, out_dir=tmp_path / "file", template=None, default_template="{stem}", default_ext="")
    with pytest.raises(click_errors.UsageError):
        plan_outputs(inputs, output=tmp_path / "x.hdr", out_dir=None, template=None, default_template="{stem}", default_ext="")
    with pytest.raises(click_errors.UsageError, match="same output"):
        plan_outputs(inputs, output=None, out_dir=tmp_path, template="fixed{ext}", default_template="", default_ext=".hdr")
    for bad in ("{stem.upper}{ext}", "{stem!r}{ext}", "{stem:>9}{ext}", "{name}{ext}", "../{stem}{ext}", "sub/{stem}{ext}", "{stem"):
        with pytest.raises(click_errors.UsageError, match="bad --name template"):
            plan_outputs(inputs, output=None, out_dir=tmp_path, template=bad, default_template="", default_ext=".hdr")


def test_bicubic_with_a_model_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(app, ["superres", str(tmp_path / "x.hdr"), "--scale", "2", "--method", "bicubic", "--model", "aviris_x2"])
    assert result.exit_code == 2 and "--model goes with --method model" in result.output


def test_output_directory_is_made_for_the_run_and_not_left_empty(tmp_path):
    from hsiuu_cli.cli.common import output_directory

    target = tmp_path / "new" / "deeper"
    with output_directory(target):
        assert target.is_dir()
    assert not (tmp_path / "new").exists()  # nothing written: both levels it made are gone
    with output_directory(target):
        (target / "result.hdr").write_text("x")
    assert (target / "result.hdr").exists()


def test_failed_run_leaves_no_empty_out_dir(runner, tmp_path):
    import numpy as np

    from hsiuu_cli.cube import Cube
    from hsiuu_cli.io import write_cube

    scene = write_cube(Cube(data=np.ones((8, 8, 3), np.float32)), tmp_path / "scene.hdr")
    for extra in (["--model", "no_such_model"], ["--dtype", "int16", "--co", "NOT_AN_OPTION=1", "-f", "GTiff"]):
        result = runner.invoke(app, ["superres", str(scene), "--scale", "2", *extra, "--out-dir", str(tmp_path / "made")])
        assert result.exit_code == 1, result.output
        assert not (tmp_path / "made").exists()


def test_run_batch_goes_on_after_a_failure(capsys):
    processed = []

    def process(source: Path, target: Path):
        if source.name == "bad":
            raise CubeReadError("garbage header", path=source)
        processed.append(source.name)
        return [target]

    jobs = [(Path("good1"), Path("out1")), (Path("bad"), Path("out2")), (Path("good2"), Path("out3"))]
    with pytest.raises(typer.Exit) as stopped:
        run_batch(jobs, process)
    assert stopped.value.exit_code == 1
    assert processed == ["good1", "good2"]
    assert capsys.readouterr().out.split() == ["out1", "out3"]


def test_interrupted_parallel_batch_leaves_no_output(tmp_path):
    """Ctrl-C in a --jobs batch: inputs not started are dropped, running ones stop writing, nothing is left."""
    import threading
    import time

    import numpy as np

    from hsiuu_cli.cube import Cube
    from hsiuu_cli.io import write_cube
    from hsiuu_cli.io.atomic import allow_writing

    started: list[str] = []
    first_running = threading.Event()

    def process(source: Path, target: Path):
        started.append(source.name)
        if source.name == "interrupt":
            first_running.wait(5)
            raise KeyboardInterrupt
        first_running.set()
        time.sleep(0.3)  # still computing when the interrupt comes
        return [write_cube(Cube(data=np.zeros((4, 4, 2), np.float32)), target)]

    jobs = [(Path("slow"), tmp_path / "slow.hdr"), (Path("interrupt"), tmp_path / "x.hdr")]
    jobs += [(Path(f"later{i}"), tmp_path / f"later{i}.hdr") for i in range(4)]
    try:
        with pytest.raises(KeyboardInterrupt):
            run_batch(jobs, process, workers=2)
    finally:
        allow_writing()
    assert list(tmp_path.iterdir()) == []
    assert not any(name.startswith("later") for name in started)


def test_run_batch_parallel_prints_every_output(capsys):
    jobs = [(Path(f"in{i}"), Path(f"out{i}")) for i in range(6)]
    run_batch(jobs, lambda source, target: [target], workers=3)
    assert sorted(capsys.readouterr().out.split()) == sorted(f"out{i}" for i in range(6))


# -q, -v and --debug anywhere on the line


@pytest.fixture
def small_cube(tmp_path) -> Path:
    from hsiuu_cli.cube import Cube
    from hsiuu_cli.io import write_cube
    import numpy as np

    return write_cube(Cube(np.ones((4, 4, 3), np.float32), wavelengths=np.array([500.0, 600.0, 700.0])), tmp_path / "in.hdr")


@pytest.mark.parametrize("where", ["before", "after"])
def test_common_options_work_before_and_after_the_command_name(runner, small_cube, tmp_path, where):
    def line(*options):
        command = ["convert", str(small_cube), str(tmp_path / f"out_{''.join(options)}.tif"), "--bands", "0,2"]
        return [*options, *command] if where == "before" else [*command, *options]

    quiet = runner.invoke(app, line("-q"))
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and quiet.stdout.strip().endswith(".tif")  # -q silences messages, not the output
    verbose = runner.invoke(app, line("-v"))
    assert verbose.exit_code == 0 and "keeping 2 of 3 bands" in verbose.stderr
    plain = runner.invoke(app, line())
    assert plain.exit_code == 0 and "keeping" not in plain.stderr and "wrote" in plain.stderr
    # errors still show with -q, and --debug lets the traceback through
    missing = ["info", str(tmp_path / "missing.hdr")]
    result = runner.invoke(app, ["-q", *missing] if where == "before" else [*missing, "-q"])
    assert result.exit_code == 1 and "missing.hdr: file not found" in result.stderr
    result = runner.invoke(app, ["--debug", *missing] if where == "before" else [*missing, "--debug"])
    assert result.exit_code == 1 and type(result.exception).__name__ == "CubeReadError"


def test_common_options_after_a_subcommand_of_a_group(runner, tmp_path):
    result = runner.invoke(app, ["train", "-q", "superres", str(tmp_path / "none"), "-s", "2", "-o", str(tmp_path / "m"), "-v"])
    assert result.exit_code == 1 and "No such option" not in result.output
    assert "none" in result.stderr  # the real error: the data is missing


def test_the_common_options_of_a_command_reset_between_runs(runner, small_cube, tmp_path):
    runner.invoke(app, ["convert", str(small_cube), str(tmp_path / "a.tif"), "-q"])
    result = runner.invoke(app, ["convert", str(small_cube), str(tmp_path / "b.tif")])
    assert "wrote" in result.stderr


# progress: plain lines on stderr when it is not a terminal


def test_progress_prints_plain_lines_while_long_work_runs(monkeypatch, capsys):
    import time

    from hsiuu_cli.cli import common

    monkeypatch.setattr(common, "PLAIN_PROGRESS_SECONDS", 0.05)
    common.set_common_options(quiet=False, verbose=False, debug=False)
    with common.progress("scene.hdr ×4", 4) as advance:
        for _ in range(4):
            time.sleep(0.06)
            advance()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2
    assert all(line.startswith("scene.hdr ×4: ") for line in lines)
    assert lines[-1].startswith("scene.hdr ×4: 4/4 (100%), done in 0:00")
    assert any("elapsed" in line for line in lines[:-1])


def test_progress_of_short_work_or_with_quiet_prints_nothing(monkeypatch, capsys):
    import time

    from hsiuu_cli.cli import common

    common.set_common_options(quiet=False, verbose=False, debug=False)
    with common.progress("quick", 2) as advance:  # well under a minute
        advance(2)
    monkeypatch.setattr(common, "PLAIN_PROGRESS_SECONDS", 0.01)
    common.set_common_options(quiet=True, verbose=False, debug=False)
    with common.progress("quiet", None) as advance:
        time.sleep(0.05)
        advance.set_total(3)
        advance(3)
    common.set_common_options(quiet=False, verbose=False, debug=False)
    assert capsys.readouterr().err == ""


def test_progress_in_a_terminal_is_a_rich_bar(tmp_path):
    """A real pseudo-terminal on stderr: the Rich bar is drawn (and its line cleared at the end)."""
    import os
    import pty
    import subprocess

    if os.name != "posix":
        pytest.skip("needs a pseudo-terminal")
    script = (
        "import time\n"
        "from hsiuu_cli.cli import common\n"
        "with common.progress('bar test', 5) as advance:\n"
        "    for _ in range(5):\n"
        "        time.sleep(0.3)\n"
        "        advance()\n"
    )
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", script], stderr=follower, stdout=subprocess.DEVNULL,
                               env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "80"})
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=60)
    os.close(leader)
    text = output.decode(errors="replace")
    assert process.returncode == 0
    assert "bar test" in text and "━" in text and "/5" in text


def test_the_folder_of_an_output_is_made_and_taken_back_if_left_empty(runner, small_cube, tmp_path):
    target = tmp_path / "new" / "deeper" / "out.tif"
    result = runner.invoke(app, ["convert", str(small_cube), str(target)])
    assert result.exit_code == 0, result.output
    assert target.exists()
    failed = runner.invoke(app, ["convert", str(small_cube), str(tmp_path / "other" / "out.tif"), "--bands", "7"])
    assert failed.exit_code == 1 and not (tmp_path / "other").exists()
