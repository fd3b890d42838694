"""The workflow picture (Graphviz): a task's steps, and the marks an alert puts on it."""

from client.alerts import KeyRef, ParamAlert
from client.workflow_picture import FLAGGED_FILL, draw
from export.contract.vocab import KeyVocabulary
from export.workflow import build_workflow

VOCABULARY = KeyVocabulary(
    ("E1", "E2", "E3", "E4"),
    ("Attempting claim <*>", "Creating image", "Took <*> seconds to spawn", "Deleting <*>"),
)


def test_a_step_the_parameter_model_flagged_is_filled_and_names_its_value(tmp_path):
    workflow = build_workflow([[3, 4, 5, 6]] * 5 + [[3, 4, 6]])
    slow = ParamAlert(
        "instance-1",
        17,
        KeyRef(5, "E3", "Took <*> seconds to spawn"),
        "time#0",
        48.2,
        20.1,
        0.0,
        31.5,
        "deeplog_params",
        1,
    )
    svg, png = draw(workflow, VOCABULARY, tmp_path / "slow", flagged=[slow])
    text = svg.read_text()
    assert FLAGGED_FILL in text  # the step's node is filled
    assert "time#0=48.2 outside [0, 31.5]" in text  # on the node and in the title
    assert "instance&#45;1 line 17" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_marks_the_picture_is_the_task_alone(tmp_path):
    workflow = build_workflow([[3, 4, 5, 6]] * 5)
    svg, _ = draw(workflow, VOCABULARY, tmp_path / "task")
    text = svg.read_text()
    assert "Creating image" in text and FLAGGED_FILL not in text and "came instead" not in text


def test_transitions_rarer_than_the_minimum_share_are_left_out_and_counted(tmp_path):
    # 3 -> 6 is 1 of 200 transitions out of 3: under 1%, it is not drawn.
    workflow = build_workflow([[3, 4, 5, 6]] * 199 + [[3, 6]])
    svg, _ = draw(workflow, VOCABULARY, tmp_path / "rare")
    text = svg.read_text()
    assert "(1 under 1% of their step&#39;s not drawn)" in text
    assert "0.01" not in text  # no label of the rare branch
    everything, _ = draw(workflow, VOCABULARY, tmp_path / "all", min_share=0.0)
    assert "not drawn" not in everything.read_text()
