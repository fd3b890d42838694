"""The served models' I/O specs. Model names are defined here and nowhere else."""

from __future__ import annotations

from export.io_spec import ModelSpec, TensorSpec

DEEPLOG_KEYS = ModelSpec(
    name="deeplog_keys",
    inputs=(
        # The h keys before the key being checked (h travels with the model version).
        TensorSpec("WINDOWS", "int64", (-1,), dynamic_names=("window",)),
        # The key that actually came next.
        TensorSpec("NEXT_KEY", "int64", (1,)),
    ),
    outputs=(
        # How many keys the model found likelier than the actual one: 0 = its first choice.
        TensorSpec("RANK", "int64", (1,)),
        # The g likeliest keys and their probabilities, for the alert's "expected" list.
        TensorSpec("TOP_KEYS", "int64", (-1,), dynamic_names=("top_g",)),
        TensorSpec("TOP_PROBS", "float32", (-1,), dynamic_names=("top_g",)),
    ),
    parameters={"intra_op_thread_count": "1"},
)

ALL_SPECS = (DEEPLOG_KEYS,)


def spec_by_name(name: str) -> ModelSpec:
    for spec in ALL_SPECS:
        if spec.name == name:
            return spec
    raise KeyError(f"no served model named {name!r}; known: {[s.name for s in ALL_SPECS]}")
