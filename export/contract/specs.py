"""The served models' I/O specs. Model names are defined here and nowhere else."""

from __future__ import annotations

from dataclasses import replace

from export.contract.io_spec import EnsembleStep, ModelSpec, TensorSpec

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

# The key model stepped once per key (export/deeplog_steps.py): each row a stretch of one
# session, read from the LSTM state the client carries; no window, the whole prefix counts.
DEEPLOG_STEPS = ModelSpec(
    name="deeplog_steps",
    inputs=(
        # The key before the stretch (START for a session's first), then its keys, padded.
        TensorSpec("KEYS", "int64", (-1,), dynamic_names=("columns",)),
        # How many of the row's columns are real (at least 2: one key before, one to check).
        TensorSpec("LENGTHS", "int64", (1,)),
        # The LSTM state the first column is read in: zeros at a session's start, else what
        # the answer to the session's last stretch gave back.
        TensorSpec("STATE", "float32", (-1,), dynamic_names=("state",)),
    ),
    outputs=(
        # Per checked key (columns 1 ..), as deeplog_keys answers for one.
        TensorSpec("RANK", "int64", (-1,), dynamic_names=("positions",)),
        TensorSpec("TOP_KEYS", "int64", (-1, -1), dynamic_names=("positions", "top_g")),
        TensorSpec("TOP_PROBS", "float32", (-1, -1), dynamic_names=("positions", "top_g")),
        # The state the row's last real key is to be read in: the session's next stretch.
        TensorSpec("STATE_OUT", "float32", (-1,), dynamic_names=("state",)),
    ),
    fixed_axes=("state",),
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
# The parameter-value model by export format (``train --format``, ``detect --params``).
PARAM_FORMATS = {"onnx": DEEPLOG_PARAMS, "torchscript": DEEPLOG_PARAMS_TORCHSCRIPT}

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

ASGNET_GNET = ModelSpec(
    name="asgnet_gnet",
    inputs=(
        TensorSpec("FEATURES", "float32", (-1,), dynamic_names=("info",)),
        # S-Net's confidence: below the version's threshold the gate fuses V-Net information in.
        TensorSpec("SNET_CONFIDENCE", "float32", (1,)),
        TensorSpec("LATENT", "float32", (-1,), dynamic_names=("latent",)),
    ),
    outputs=(
        # Class probabilities (the version's meta names the classes; class 0 is "normal").
        TensorSpec("PROBS", "float32", (-1,), dynamic_names=("classes",)),
        TensorSpec("CONFIDENCE", "float32", (1,)),
    ),
    fixed_axes=("info", "latent", "classes"),
    parameters={"intra_op_thread_count": "1"},
)

# The similar-incident search: the k labelled training units nearest to a unit's S-Net
# features (exact squared L2, as faiss's IndexFlatL2), as an ONNX graph holding the indexed
# embeddings, so the search runs on the server, on the GPU where there is one. The version's
# meta.json names the units its row ids stand for.
ASGNET_SIMILAR = ModelSpec(
    name="asgnet_similar",
    inputs=(TensorSpec("FEATURES", "float32", (-1,), dynamic_names=("info",)),),
    outputs=(
        TensorSpec("SIMILAR_UNITS", "int64", (-1,), dynamic_names=("k",)),  # index rows
        TensorSpec("SIMILAR_DISTANCES", "float32", (-1,), dynamic_names=("k",)),  # nearest first
    ),
    fixed_axes=("info", "k"),
    max_batch_size=256,
    # Units at the same distance (texts cut to the same first tokens) come in any order, so
    # row ids are not compared; publishing checks each returned row's distance instead.
    max_int_mismatch=1.0,
    parameters={"intra_op_thread_count": "1"},
)

# What a client needs of a model version (h, g, vocabulary, bounds, classes: its meta.json),
# served over gRPC so the client needs only the server's address. One Python model for all:
# MODEL and VERSION in, the version's meta.json text out.
MODEL_META = ModelSpec(
    name="model_meta",
    backend="python",
    default_model_filename="model.py",
    inputs=(TensorSpec("MODEL", "bytes", (1,)), TensorSpec("VERSION", "int64", (1,))),
    outputs=(TensorSpec("META", "bytes", (1,)),),
    max_batch_size=0,
    num_versions=1,
)

# The four ASGNet models as ensemble steps: text -> tokens -> S-Net; counts -> V-Net; G-Net.
ASGNET_STEPS = (
    EnsembleStep(
        ASGNET_TOKENIZER.name,
        {"TEXT": "TEXT"},
        {"INPUT_IDS": "input_ids", "ATTENTION_MASK": "attention_mask"},
    ),
    EnsembleStep(
        ASGNET_SNET.name,
        {"INPUT_IDS": "input_ids", "ATTENTION_MASK": "attention_mask"},
        # S-Net's own PROBS are left unmapped: Triton refuses an ensemble tensor nobody reads.
        {"FEATURES": "FEATURES", "CONFIDENCE": "snet_confidence"},
    ),
    EnsembleStep(ASGNET_VNET.name, {"COUNTS": "COUNTS"}, {"LATENT": "latent"}),
    EnsembleStep(
        ASGNET_GNET.name,
        {"FEATURES": "FEATURES", "SNET_CONFIDENCE": "snet_confidence", "LATENT": "latent"},
        {"PROBS": "PROBS", "CONFIDENCE": "CONFIDENCE"},
    ),
)

ASGNET = ModelSpec(
    name="asgnet",
    inputs=(
        TensorSpec("TEXT", "bytes", (1,)),
        TensorSpec("COUNTS", "float32", (-1,)),
    ),
    outputs=(
        TensorSpec("PROBS", "float32", (-1,)),
        TensorSpec("CONFIDENCE", "float32", (1,)),
        # S-Net's embedding of the text: the key into the similar-incident index.
        TensorSpec("FEATURES", "float32", (-1,)),
    ),
    max_batch_size=min(ASGNET_TOKENIZER.max_batch_size, ASGNET_SNET.max_batch_size),
    steps=ASGNET_STEPS,
)

# One request per session: its L windows for DeepLog and its one text and count vector for
# ASGNet. The batch sizes differ (L vs 1), so this ensemble does not batch and states the
# leading dimension itself; Triton hands each composing model its full tensor as a batch.
LOG_ANOMALY = ModelSpec(
    name="log_anomaly",
    inputs=(
        TensorSpec("WINDOWS", "int64", (-1, -1)),
        TensorSpec("NEXT_KEY", "int64", (-1, 1)),
        TensorSpec("TEXT", "bytes", (-1, 1)),
        TensorSpec("COUNTS", "float32", (-1, -1)),
    ),
    outputs=(
        TensorSpec("RANK", "int64", (-1, 1)),
        TensorSpec("TOP_KEYS", "int64", (-1, -1)),
        TensorSpec("TOP_PROBS", "float32", (-1, -1)),
        TensorSpec("PROBS", "float32", (-1, -1)),
        TensorSpec("CONFIDENCE", "float32", (-1, 1)),
        # The k nearest labelled past units (rows of the version's index) and their distances.
        TensorSpec("SIMILAR_UNITS", "int64", (-1, -1)),
        TensorSpec("SIMILAR_DISTANCES", "float32", (-1, -1)),
    ),
    max_batch_size=0,
    steps=(
        EnsembleStep(
            DEEPLOG_KEYS.name,
            {"WINDOWS": "WINDOWS", "NEXT_KEY": "NEXT_KEY"},
            {"RANK": "RANK", "TOP_KEYS": "TOP_KEYS", "TOP_PROBS": "TOP_PROBS"},
        ),
        *ASGNET_STEPS,
        EnsembleStep(
            ASGNET_SIMILAR.name,
            {"FEATURES": "FEATURES"},
            {"SIMILAR_UNITS": "SIMILAR_UNITS", "SIMILAR_DISTANCES": "SIMILAR_DISTANCES"},
        ),
    ),
)

ALL_SPECS = (
    DEEPLOG_KEYS,
    DEEPLOG_STEPS,
    DEEPLOG_PARAMS,
    DEEPLOG_PARAMS_TORCHSCRIPT,
    ASGNET_VNET,
    ASGNET_TOKENIZER,
    ASGNET_SNET,
    ASGNET_GNET,
    ASGNET_SIMILAR,
    ASGNET,
    LOG_ANOMALY,
    MODEL_META,
)
ENSEMBLES = tuple(spec for spec in ALL_SPECS if spec.is_ensemble)
