"""Every served model refuses or flags input it cannot judge, straight from gRPC: a wrong
dtype is refused (INVALID_ARGUMENT, by Triton); an id outside the vocabulary, a NaN or text it
cannot encode is answered with that row flagged (NaN in its float outputs, -1 in its integer
ones), and a width other than the version's own with every row flagged, by the graph itself,
so the same on NVIDIA's container and inside the ensembles; the client refuses such an
answer. A seeded fuzzer sends ten thousand malformed requests across every model, with valid
ones among them that must come back exactly right."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from client.triton_client import UnjudgedInput, _tensors
from export.contract.metas import AsgnetMeta
from export.contract.specs import (
    ASGNET,
    ASGNET_GNET,
    ASGNET_SIMILAR,
    ASGNET_SNET,
    ASGNET_TOKENIZER,
    ASGNET_VNET,
    DEEPLOG_KEYS,
    DEEPLOG_PARAMS,
    LOG_ANOMALY,
    MODEL_META,
)

FUZZ_REQUESTS = 13_000  # about one in six is valid: at least 10,000 malformed
IN_FLIGHT = 32


@dataclass(frozen=True)
class Served:
    """A served model as the fuzzer sees it: one valid request, each input's id range (ints)
    and the inputs whose width the version fixes (another is flagged in every row)."""

    name: str
    valid: dict[str, np.ndarray]
    ids: dict[str, tuple[int, int]]
    fixed_width: frozenset[str]


@pytest.fixture(scope="module")
def served(
    repository, hdfs_model, param_models, asgnet_release, tiny_asgnet, tiny_asgnet_config
) -> list[Served]:
    keys, param = hdfs_model.meta, param_models["onnx"].meta
    vocab = (0, keys.vocabulary.size)
    tokens = (0, tiny_asgnet[0].snet.encoder.config.vocab_size)
    info, latent = tiny_asgnet_config.snet.info_dim, tiny_asgnet_config.vnet.latent
    counts = AsgnetMeta.load(repository, asgnet_release).vocabulary.size
    two = {
        "WINDOWS": np.full((2, keys.window), 3, np.int64),
        "NEXT_KEY": np.full((2, 1), 3, np.int64),
        "TEXT": np.array([[b"a log line"], [b"another one"]], dtype=object),
        "COUNTS": np.zeros((2, counts), np.float32),
        "FEATURES": np.zeros((2, info), np.float32),
    }
    ids = np.full((2, 8), 5, np.int64)
    no_width = frozenset()
    return [
        Served(
            DEEPLOG_KEYS.name,
            {n: two[n] for n in DEEPLOG_KEYS.input_names},
            {"WINDOWS": vocab, "NEXT_KEY": vocab},
            frozenset({"WINDOWS"}),
        ),
        Served(
            DEEPLOG_PARAMS.name,
            {
                "HISTORY": np.zeros((2, param.window, param.width), np.float32),
                "KEY": two["NEXT_KEY"],
            },
            {"KEY": vocab},
            frozenset({"HISTORY"}),
        ),
        Served(
            ASGNET_SNET.name,
            {"INPUT_IDS": ids, "ATTENTION_MASK": np.ones_like(ids)},
            {"INPUT_IDS": tokens, "ATTENTION_MASK": (0, 2)},
            no_width,
        ),
        Served(ASGNET_VNET.name, {"COUNTS": two["COUNTS"]}, {}, frozenset({"COUNTS"})),
        Served(
            ASGNET_GNET.name,
            {
                "FEATURES": two["FEATURES"],
                "SNET_CONFIDENCE": np.full((2, 1), 0.5, np.float32),
                "LATENT": np.zeros((2, latent), np.float32),
            },
            {},
            frozenset({"FEATURES", "LATENT"}),
        ),
        Served(ASGNET_SIMILAR.name, {"FEATURES": two["FEATURES"]}, {}, frozenset({"FEATURES"})),
        # The ensembles, wrong widths too: their steps flag them, none fails (a failing step
        # trips Triton 2.51's ensemble scheduler, see server_config/shims/runners.py).
        Served(ASGNET.name, {n: two[n] for n in ASGNET.input_names}, {}, frozenset({"COUNTS"})),
        Served(
            LOG_ANOMALY.name,
            {n: two[n] for n in LOG_ANOMALY.input_names},
            {"WINDOWS": vocab, "NEXT_KEY": vocab},
            frozenset({"WINDOWS", "COUNTS"}),
        ),
        Served(ASGNET_TOKENIZER.name, {"TEXT": two["TEXT"]}, {}, no_width),
        Served(
            MODEL_META.name,
            {
                "MODEL": np.array([DEEPLOG_KEYS.name.encode()], dtype=object),
                "VERSION": np.array([keys.version], np.int64),
            },
            {},
            no_width,
        ),
    ]


def _request(model: Served, inputs: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    return _tensors(inputs)  # as the client builds them, with nothing checked on the way


def _by_name(served: list[Served], name: str) -> Served:
    return next(m for m in served if m.name == name)


def _flagged_rows(model: str, outputs: dict[str, np.ndarray]) -> set[int]:
    """Rows an answer flags: NaN in a float output, or (the tokenizer) ids of -1."""
    rows: set[int] = set()
    for name, array in outputs.items():
        if array.dtype.kind == "f":
            rows |= set(np.argwhere(~np.isfinite(array))[:, 0].tolist())
        elif model == ASGNET_TOKENIZER.name and name == "INPUT_IDS":
            rows |= set(np.argwhere((array == -1).all(axis=1))[:, 0].tolist())
    return rows


@pytest.mark.parametrize(
    ("model", "tensor", "value"),
    [
        (DEEPLOG_KEYS.name, "NEXT_KEY", -1),  # ONNX's Gather would read the last key
        (DEEPLOG_KEYS.name, "WINDOWS", 10**6),
        (DEEPLOG_PARAMS.name, "KEY", -1),
        (DEEPLOG_PARAMS.name, "HISTORY", np.inf),
        (ASGNET_SNET.name, "INPUT_IDS", -1),
        (ASGNET_VNET.name, "COUNTS", np.nan),
        (ASGNET.name, "COUNTS", np.nan),
        (LOG_ANOMALY.name, "COUNTS", np.nan),
        (LOG_ANOMALY.name, "NEXT_KEY", -1),
        (ASGNET_TOKENIZER.name, "TEXT", b"\xc3\x28"),
    ],
)
def test_an_id_out_of_range_a_nan_or_bad_text_is_answered_flagged_and_the_client_refuses_it(
    triton, served, model, tensor, value
):
    target = _by_name(served, model)
    inputs = {n: a.copy() for n, a in target.valid.items()}
    inputs[tensor].reshape(-1)[0] = value  # row 0 only
    client = grpcclient.InferenceServerClient(triton.url)
    answer = client.infer(model, _request(target, inputs))
    outputs = {o.name: answer.as_numpy(o.name) for o in answer.get_response().outputs}
    client.close()
    assert _flagged_rows(model, outputs) == {0}  # row 1 is answered as ever
    if any(a.dtype.kind == "f" for a in outputs.values()):
        with pytest.raises(UnjudgedInput, match=r"in 1 row\(s\) \(0\)"):
            triton.infer(model, inputs, list(outputs))


@pytest.mark.parametrize(
    ("model", "tensor"),
    [(DEEPLOG_KEYS.name, "WINDOWS"), (LOG_ANOMALY.name, "WINDOWS"), (LOG_ANOMALY.name, "COUNTS")],
)
def test_a_tensor_of_another_width_is_answered_with_every_row_flagged_and_the_client_refuses_it(
    triton, served, model, tensor
):
    target = _by_name(served, model)
    inputs = dict(target.valid, **{tensor: target.valid[tensor][:, :-1].copy()})
    client = grpcclient.InferenceServerClient(triton.url)
    answer = client.infer(model, _request(target, inputs))
    outputs = {o.name: answer.as_numpy(o.name) for o in answer.get_response().outputs}
    client.close()
    assert _flagged_rows(model, outputs) == {0, 1}
    with pytest.raises(UnjudgedInput, match=r"in 2 row\(s\)"):
        triton.infer(model, inputs, list(outputs))


def _malformed(model: Served, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], str, int]:
    """One request with one thing wrong in one row; the kind of wrong and the row."""
    rows = int(rng.integers(1, 9))
    unbatched = model.name == MODEL_META.name
    inputs = {
        n: a if unbatched else np.ascontiguousarray(np.repeat(a[:1], rows, axis=0))
        for n, a in model.valid.items()
    }
    row = 0 if unbatched else int(rng.integers(0, rows))
    kinds = ["valid"]
    kinds += ["dtype"] * any(a.dtype != object for a in inputs.values())
    kinds += ["id"] * 3 * bool(model.ids)
    kinds += ["float"] * 3 * any(a.dtype.kind == "f" for a in inputs.values())
    kinds += ["width"] * bool(model.fixed_width)
    kinds += ["text"] * 3 * ("TEXT" in inputs or "MODEL" in inputs)
    kind = str(rng.choice(kinds))
    if kind == "id":
        name = str(rng.choice(sorted(model.ids)))
        low, high = model.ids[name]
        bad = rng.choice([low - 1, low - high, high, high + 7, np.iinfo(np.int64).max, -(2**62)])
        inputs[name] = inputs[name].copy()
        cells = inputs[name][row].reshape(-1)
        cells[rng.integers(0, cells.size)] = bad
    elif kind == "float":
        name = str(rng.choice(sorted(n for n, a in inputs.items() if a.dtype.kind == "f")))
        inputs[name] = inputs[name].copy()
        cells = inputs[name][row].reshape(-1)
        cells[rng.integers(0, cells.size)] = rng.choice([np.nan, np.inf, -np.inf])
    elif kind == "width":
        name = str(rng.choice(sorted(model.fixed_width)))
        array = inputs[name]
        if array.shape[-1] > 1 and rng.random() < 0.5:
            inputs[name] = np.ascontiguousarray(array[..., :-1])
        else:
            pad = np.repeat(array[..., :1], int(rng.integers(1, 4)), axis=-1)
            inputs[name] = np.concatenate([array, pad], axis=-1)
    elif kind == "text":
        name = "TEXT" if "TEXT" in inputs else "MODEL"
        choices = [b"", b"\xc3\x28", b"\xff" * 5, b"   "] + [b"../meta"] * (name == "MODEL")
        inputs[name] = inputs[name].copy()
        inputs[name].reshape(-1)[row] = choices[int(rng.integers(0, len(choices)))]
    elif kind == "dtype":  # a float tensor sent as float64, an int one as int32
        name = str(rng.choice(sorted(n for n, a in inputs.items() if a.dtype != object)))
        wider = np.float64 if inputs[name].dtype.kind == "f" else np.int32
        inputs[name] = inputs[name].astype(wider)
    return inputs, kind, row


# What a malformed request must get: refused outright, or answered with its row (or, for a
# width, which every row shares, all rows) flagged.
REFUSED, FLAGGED = "refused (INVALID_ARGUMENT)", "answered, the row flagged"


def _expected(model: str, kind: str) -> str:
    if kind == "dtype" or (kind == "text" and model == MODEL_META.name):
        return REFUSED
    return FLAGGED


def test_ten_thousand_malformed_requests_are_each_refused_or_flagged_and_valid_ones_stay_right(
    server, served, triton
):
    rng = np.random.default_rng(17)
    reference = {}
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for model in served:
        answer = client.infer(model.name, _request(model, model.valid))
        reference[model.name] = {
            o.name: answer.as_numpy(o.name) for o in answer.get_response().outputs
        }
    slots = threading.BoundedSemaphore(IN_FLIGHT)
    lock = threading.Lock()
    outcomes: Counter[tuple[str, str]] = Counter()
    wrong: list[str] = []
    done = threading.Event()
    finished = [0]

    def record(model: Served, kind: str, row: int, rows: int):
        def callback(result, error):
            if error is not None:
                got = REFUSED if error.status() == "StatusCode.INVALID_ARGUMENT" else str(error)
            else:
                outputs = {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}
                flagged = _flagged_rows(model.name, outputs)
                if kind == "valid":
                    same = all(
                        np.allclose(outputs[n][:1], reference[model.name][n][:1], atol=1e-5)
                        if outputs[n].dtype.kind == "f"
                        else np.array_equal(outputs[n][:1], reference[model.name][n][:1])
                        for n in outputs
                    )
                    got = "valid" if same and not flagged else "a wrong answer"
                else:
                    want_rows = set(range(rows)) if kind == "width" else {row}
                    got = FLAGGED if flagged == want_rows else f"flagged rows {flagged}"
            with lock:
                want = "valid" if kind == "valid" else _expected(model.name, kind)
                outcomes[(kind, got)] += 1
                if got != want:
                    wrong.append(f"{model.name} ({kind}, row {row} of {rows}): {got}")
                finished[0] += 1
                if finished[0] == FUZZ_REQUESTS:
                    done.set()
            slots.release()

        return callback

    for _ in range(FUZZ_REQUESTS):
        model = served[int(rng.integers(0, len(served)))]
        inputs, kind, row = _malformed(model, rng)
        rows = len(next(iter(inputs.values())))
        slots.acquire()
        client.async_infer(
            model.name,
            _request(model, inputs),
            callback=record(model, kind, row, rows),
            client_timeout=60,
        )
    assert done.wait(300), f"{FUZZ_REQUESTS - finished[0]} requests never answered"
    client.close()
    assert wrong == [], (len(wrong), wrong[:10], outcomes)
    malformed = sum(n for (kind, _), n in outcomes.items() if kind != "valid")
    assert malformed >= 10_000, outcomes
    # Still serving, and still right.
    keys = _by_name(served, DEEPLOG_KEYS.name)
    out = triton.infer(DEEPLOG_KEYS.name, keys.valid, DEEPLOG_KEYS.output_names).outputs
    np.testing.assert_array_equal(out["RANK"], reference[DEEPLOG_KEYS.name]["RANK"])
