"""The one front door: every command has help with examples, and a bad config ends in one line."""

import pytest

from mvclip_utils.cli import COMMANDS, HANDLERS, build_parser, main


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: mvclip {command}" in out and "examples:" in out and "mvclip" in out.split("examples:")[1]


def test_the_commands_are_the_documented_ones():
    assert COMMANDS == ("run", "sweep", "select", "collect", "render", "embed", "tune", "lab")
    assert set(HANDLERS) == set(COMMANDS)
    assert build_parser().parse_args(["run", "--config", "c.yaml", "--only", "04"]).only == "04"


@pytest.mark.parametrize("argv", [["run", "--config", "missing.yaml"], ["--config", "missing.yaml"],
                                  ["render", "--config", "missing.yaml"], ["embed", "--config", "missing.yaml",
                                                                           "--merge", "2"]])
def test_a_missing_config_is_one_line_naming_it_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mvclip: ") and "missing.yaml" in err


def test_shard_and_merge_together_are_refused(tmp_path, capsys):
    from helpers import write_config

    config = write_config(tmp_path / "c.yaml")
    assert main(["render", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--shard", "0/2",
                 "--merge", "2"]) == 2
    assert "--shard and --merge" in capsys.readouterr().err


def test_a_config_selecting_no_notebook_names_its_setting_not_only(tmp_path, capsys):
    import yaml
    from helpers import TINY, deep_update

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(deep_update(TINY, {"pipeline": {"notebooks": "99"}})))
    assert main(["run", "--config", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mvclip: pipeline.notebooks: '99' selects no notebook; available: 01_render")
    assert "--only" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("code, says", [(28, "no space left on the disk that holds {path}: free space there"),
                                        (30, "cannot write {path} (Read-only file system): make its folder "
                                             "writable")])
def test_a_full_disk_or_read_only_run_dir_is_one_line_naming_the_path_with_nothing_half_written(
        code, says, tmp_path, capsys, monkeypatch):
    import os

    from helpers import write_config

    config = write_config(tmp_path / "c.yaml")
    run_dir = tmp_path / "run"
    strerror = os.strerror(code)

    def refuse(*args, **kwargs):  # as the kernel answers a write on a full disk or a read-only mount
        raise OSError(code, strerror)

    monkeypatch.setattr(os, "replace", refuse)
    assert main(["render", "--config", str(config), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    path = run_dir / "configs" / "01_render.yaml"  # the first file the command writes
    assert err.count("\n") == 1 and err.startswith("mvclip: " + says.format(path=path))
    assert "and rerun; finished work is kept" in err
    assert not path.exists() and not list(path.parent.iterdir())  # no file, no temp file left behind
