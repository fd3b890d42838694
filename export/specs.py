"""The served models' I/O specs. Model names are defined here and nowhere else."""

from __future__ import annotations

from dataclasses import replace

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
    fixed_axes=("window",),
    parameters={"intra_op_thread_count": "1"},
)

DEEPLOG_PARAMS = ModelSpec(
    name="deeplog_params",
    inputs=(
        # The h previous parameter vectors of the same key, normalised, zero-padded to the width.
        TensorSpec("HISTORY", "float32", (-1, -1), dynamic_names=("window", "width")),
        # Which key the vectors belong to (the model is conditioned on it).
        TensorSpec("KEY", "int64", (1,)),
    ),
    outputs=(
        # The predicted next vector, normalised units; the client compares it with the actual
        # one against the version's per-key, per-dimension bounds.
        TensorSpec("PREDICTED", "float32", (-1,), dynamic_names=("width",)),
    ),
    fixed_axes=("window", "width"),
    atol=1e-4,
    parameters={"intra_op_thread_count": "1"},
)


def torchscript_variant(spec: ModelSpec) -> ModelSpec:
    """The same model as TorchScript, for Triton's `pytorch` backend."""
    return replace(
        spec,
        name=f"{spec.name}_torchscript",
        backend="pytorch",
        default_model_filename="model.pt",
        parameters={"INTRA_OP_THREAD_COUNT": "1"},
    )


DEEPLOG_PARAMS_TORCHSCRIPT = torchscript_variant(DEEPLOG_PARAMS)

ASGNET_VNET = ModelSpec(
    name="asgnet_vnet",
    inputs=(
        # log1p(count) of each log key in the unit; the width is the version's key vocabulary.
        TensorSpec("COUNTS", "float32", (-1,), dynamic_names=("keys",)),
    ),
    outputs=(
        # The latent mean: the unit's statistical representation.
        TensorSpec("LATENT", "float32", (-1,), dynamic_names=("latent",)),
    ),
    fixed_axes=("keys", "latent"),
    parameters={"intra_op_thread_count": "1"},
)

ASGNET_TOKENIZER = ModelSpec(
    name="asgnet_tokenizer",
    backend="python",
    default_model_filename="model.py",
    inputs=(
        # A unit's log text (its templates, one per line), UTF-8.
        TensorSpec("TEXT", "bytes", (1,)),
    ),
    outputs=(
        # RoBERTa input: <s> tokens </s>, truncated, padded to the request's longest text.
        TensorSpec("INPUT_IDS", "int64", (-1,), dynamic_names=("tokens",)),
        TensorSpec("ATTENTION_MASK", "int64", (-1,), dynamic_names=("tokens",)),
    ),
    max_batch_size=256,
)

ASGNET_SNET = ModelSpec(
    name="asgnet_snet",
    inputs=(
        TensorSpec("INPUT_IDS", "int64", (-1,), dynamic_names=("tokens",)),
        TensorSpec("ATTENTION_MASK", "int64", (-1,), dynamic_names=("tokens",)),
    ),
    outputs=(
        # The text's features in the information space G-Net gates in.
        TensorSpec("FEATURES", "float32", (-1,), dynamic_names=("info",)),
        # The semantic head's class probabilities and its confidence (the largest of them).
        TensorSpec("PROBS", "float32", (-1,), dynamic_names=("classes",)),
        TensorSpec("CONFIDENCE", "float32", (1,)),
    ),
    fixed_axes=("info", "classes"),
    max_batch_size=256,
    atol=1e-4,
    parameters={"intra_op_thread_count": "1"},
)

ALL_SPECS = (
    DEEPLOG_KEYS,
    DEEPLOG_PARAMS,
    DEEPLOG_PARAMS_TORCHSCRIPT,
    ASGNET_VNET,
    ASGNET_TOKENIZER,
    ASGNET_SNET,
)
