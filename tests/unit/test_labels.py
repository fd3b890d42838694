"""The user's labels for ASGNet: per session or per line, classes named by the user, and a
refusal in one line of labels too thin to learn from."""

import pytest

from client.cli import main
from client.formats import builtin
from client.ops.errors import LabelsError
from client.ops.labels import Labelled, classes_of, read_labels, session_labels
from client.ops.workload import WorkloadConfig, generate_workload


def test_labels_per_session_name_classes_and_normal_in_any_spelling(tmp_path):
    path = tmp_path / "anomaly_label.csv"
    path.write_text("BlockId,Label\nblk_1,Anomaly\nblk_2,Normal\nblk_3,-\nblk_4,\n\nblk_5,disk\n")
    labels = read_labels(path)
    assert labels.kind is Labelled.SESSION
    assert labels.values == {"blk_1": "Anomaly", "blk_5": "disk"}
    assert classes_of(labels.values) == ("normal", "Anomaly", "disk")


def test_labels_per_line_give_a_session_the_class_of_its_first_abnormal_line(tmp_path):
    lines = [
        b"081109 203615 148 INFO dfs.DataNode: Receiving block blk_1 src: /10.0.0.1:5 dest: /x",
        b"081109 203616 148 INFO dfs.DataNode: Receiving block blk_2 src: /10.0.0.1:5 dest: /x",
        b"081109 203617 148 WARN dfs.DataNode: writeBlock blk_1 received exception",
        b"081109 203618 148 WARN dfs.DataNode: writeBlock blk_1 timed out",
    ]
    path = tmp_path / "lines.csv"
    path.write_text("LineId,Label\n1,-\n3,write_exception\n4,timeout\n")
    labels = read_labels(path)
    assert labels.kind is Labelled.LINE
    assert session_labels(labels, lines, builtin("hdfs")) == {"blk_1": "write_exception"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "the first row must be a header of two columns"),
        ("LineId,Label\nfour,x\n", "'four' is not a line number"),
        ("BlockId,Label\nblk_1\n", "row 2: two columns expected"),
    ],
)
def test_a_bad_labels_file_is_a_one_line_error_naming_it(tmp_path, text, error):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(LabelsError, match=error):
        read_labels(path)


def test_train_asgnet_refuses_a_class_with_too_few_sessions_in_one_line(tmp_path, capsys):
    workload = generate_workload(WorkloadConfig(200, 0.0, seed=4))
    log = tmp_path / "labelled.log"
    log.write_bytes(b"\n".join(workload.lines) + b"\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("BlockId,Label\n" + f"{next(iter(workload.truth))},disk_full\n")
    argv = ["train-asgnet", str(log), "--labels", str(labels), "--repository", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too few distinct sessions to learn from: normal " in err[0]
    assert err[0].endswith("(each class needs at least 3; too few: disk_full)")
    labels.write_text("BlockId,Label\n")
    assert main(argv) == 1
    assert "every session is normal" in capsys.readouterr().err
    assert not (tmp_path / "asgnet_gnet").exists()


def test_train_asgnet_learns_the_user_s_classes_publishes_and_states_its_check_figures(
    tmp_path, capsys
):
    workload = generate_workload(WorkloadConfig(240, 0.25, seed=6))
    log = tmp_path / "labelled.log"
    log.write_bytes(b"\n".join(workload.lines) + b"\n")
    labels = tmp_path / "labels.csv"
    rows = [f"{block},{kind}" for block, kind in workload.truth.items() if kind]
    labels.write_text("BlockId,Label\n" + "\n".join(rows) + "\n")
    small = ["--hidden", "16", "--layers", "1", "--mlm-epochs", "1", "--epochs", "2"]
    argv = ["train-asgnet", str(log), "--labels", str(labels), "--repository", str(tmp_path)]
    assert main([*argv, *small]) == 0
    out = capsys.readouterr().out
    assert "asgnet v1 (classes normal, " in out
    check = next(line for line in out.splitlines() if line.startswith("on the check set"))
    assert "recall" in check and "false-positive rate" in check and "macro F1" in check
    assert (tmp_path / "asgnet_gnet" / "1").is_dir()
