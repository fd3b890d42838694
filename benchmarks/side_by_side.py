"""The same key model on the same windows, four ways, in one run:

(a) a per-window PyTorch loop, as the public DeepLog reproductions predict (one window per
    forward pass, then argsort of the logits for the top g);
(b) PyTorch in-process, batched;
(c) ONNX Runtime in-process, batched, on the exported model.onnx of the served version;
(d) through Triton over gRPC, the client's own path (``KeyModel.score``).

Each reports windows per second; (a) runs on a subset, since it is slow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from client.detection import KeyModel
from export.contract.specs import DEEPLOG_KEYS
from export.deeplog_keys import KeyModelServing
from export.publish import KeyVersion


@dataclass(frozen=True)
class WayResult:
    way: str
    how: str
    windows: int
    seconds: float
    same_verdicts: float = 1.0  # share of the loop's windows given the loop's verdict

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.seconds


def _timed(way: str, how: str, windows: int, run: Callable[[], None]) -> WayResult:
    start = time.perf_counter()
    run()
    return WayResult(way, how, windows, time.perf_counter() - start)


def compare(
    served: KeyModel,
    repository: Path,
    windows: np.ndarray,
    next_keys: np.ndarray,
    loop_windows: int = 2000,
    batch: int = 4096,
) -> list[WayResult]:
    """Score ``windows`` each way; each result says how often its verdict matched the loop's."""
    version = KeyVersion.load(repository, served.meta.version)
    g = served.meta.top_g
    serving = KeyModelServing(version.model, g).eval()
    verdicts: dict[str, np.ndarray] = {}

    def per_window_loop() -> None:
        flags = []
        with torch.no_grad():
            for window, key in zip(windows[:loop_windows], next_keys[:loop_windows], strict=True):
                output = version.model(torch.tensor(window, dtype=torch.long).view(1, -1))
                predicted = torch.argsort(output[0])[-g:]
                flags.append(int(key) not in predicted.tolist())
        verdicts["a"] = np.array(flags)

    def torch_batched() -> None:
        ranks = []
        with torch.inference_mode():
            for i in range(0, len(windows), batch):
                rank, _, _ = serving(
                    torch.from_numpy(windows[i : i + batch]),
                    torch.from_numpy(next_keys[i : i + batch, None]),
                )
                ranks.append(rank[:, 0].numpy())
        verdicts["b"] = np.concatenate(ranks) >= g

    session = ort.InferenceSession(
        str(repository / DEEPLOG_KEYS.name / str(served.meta.version) / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )

    def onnx_runtime() -> None:
        ranks = []
        for i in range(0, len(windows), batch):
            rank = session.run(
                ["RANK"],
                {"WINDOWS": windows[i : i + batch], "NEXT_KEY": next_keys[i : i + batch, None]},
            )[0]
            ranks.append(rank[:, 0])
        verdicts["c"] = np.concatenate(ranks) >= g

    def triton() -> None:
        verdicts["d"] = served.score(windows, next_keys).rank >= g

    n, loop_n = len(windows), min(loop_windows, len(windows))
    results = [
        _timed(
            "a",
            "PyTorch, one window per forward pass (public DeepLog scripts)",
            loop_n,
            per_window_loop,
        ),
        _timed("b", f"PyTorch in-process, batches of {batch}", n, torch_batched),
        _timed("c", f"ONNX Runtime in-process, batches of {batch}", n, onnx_runtime),
        _timed(
            "d",
            f"Triton over gRPC (client KeyModel.score, requests of {served.max_batch})",
            n,
            triton,
        ),
    ]
    # Same verdict as the loop on its windows (a near tie may fall the other way in ONNX).
    return [
        replace(r, same_verdicts=float(np.mean(verdicts[r.way][:loop_n] == verdicts["a"])))
        for r in results
    ]
