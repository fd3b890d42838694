"""What an ASGNet release keeps so that operator feedback can fine-tune it later.

The served graphs cannot be trained further, so each release also keeps the PyTorch weights of
S-Net, V-Net and G-Net (and the V-Net-alone head), the configs they were built with, the
labelled units they learnt from (replayed by a fine-tune, and the rows of the similar-incident
index) and the check units a fine-tuned model is judged on before it is published. It lives in
G-Net's version folder, beside the meta that names the classes and key vocabulary; the
tokenizer is the tokenizer model's own file of the same version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import RobertaConfig, RobertaModel

from export.asgnet import AsgnetConfig, TrainedAsgnet, Units
from export.contract.metas import read_meta
from export.contract.specs import ASGNET_GNET, ASGNET_TOKENIZER
from export.contract.vocab import KeyVocabulary
from export.gnet import GNet, GNetConfig, LatentClassifier
from export.log_tokenizer import TOKENIZER_FILE
from export.snet import SNet, SNetConfig
from export.vnet import VNet, VNetConfig

STATE_WEIGHTS = "asgnet_state.pt"
STATE_INFO = "asgnet_state.json"


@dataclass(frozen=True)
class AsgnetState:
    trained: TrainedAsgnet
    indexed: Units  # the labelled units learnt from, in the similar-incident index's order
    check: Units  # held back from training: a fine-tune must not get worse on them


def _modules(trained: TrainedAsgnet) -> dict[str, torch.nn.Module]:
    return {
        "snet": trained.snet,
        "vnet": trained.vnet,
        "gnet": trained.gnet,
        "vnet_head": trained.vnet_head,
    }


def save_state(trained: TrainedAsgnet, indexed: Units, check: Units, folder: Path) -> None:
    torch.save({n: m.state_dict() for n, m in _modules(trained).items()}, folder / STATE_WEIGHTS)
    info = {
        "config": asdict(trained.config),
        # A checkpoint named by the user may be sized unlike config.snet: its own config rules.
        "encoder": trained.snet.encoder.config.to_dict(),
        "report": trained.report,
        "indexed": indexed.to_json(),
        "check": check.to_json(),
    }
    (folder / STATE_INFO).write_text(json.dumps(info, ensure_ascii=False))


def _config(data: dict) -> AsgnetConfig:
    nets = {"snet": SNetConfig, "vnet": VNetConfig, "gnet": GNetConfig}
    return AsgnetConfig(
        **{k: nets[k](**v) if k in nets else v for k, v in data.items()}  # type: ignore[arg-type]
    )


def has_state(repository: Path, version: int) -> bool:
    return (repository / ASGNET_GNET.name / str(version) / STATE_WEIGHTS).exists()


def load_state(repository: Path, version: int) -> AsgnetState:
    """Rebuild version ``version`` as it was trained, from its folders in ``repository``."""
    folder = repository / ASGNET_GNET.name / str(version)
    if not has_state(repository, version):
        raise FileNotFoundError(
            f"{folder} keeps no training state ({STATE_WEIGHTS}): this release was published "
            "before fine-tuning on feedback existed; train ASGNet again to get one"
        )
    meta = read_meta(repository, ASGNET_GNET.name, version)
    info = json.loads((folder / STATE_INFO).read_text())
    weights = torch.load(folder / STATE_WEIGHTS, weights_only=True)
    config = _config(info["config"])
    classes = tuple(meta["classes"])
    vocabulary = KeyVocabulary.from_json(meta["vocabulary"])
    encoder = RobertaModel(RobertaConfig.from_dict(info["encoder"]), add_pooling_layer=False)
    snet = SNet(encoder, config.snet, len(classes))
    vnet = VNet(vocabulary.size, config.vnet)
    gnet = GNet(config.snet.info_dim, config.vnet.latent, len(classes), config.gnet)
    vnet_head = LatentClassifier(config.vnet.latent, len(classes), config.gnet.hidden)
    tokenizer = Tokenizer.from_file(
        str(repository / ASGNET_TOKENIZER.name / str(version) / TOKENIZER_FILE)
    )
    trained = TrainedAsgnet(
        tokenizer, vnet, snet, gnet, vnet_head, classes, vocabulary, info["report"], config
    )
    for name, module in _modules(trained).items():
        module.load_state_dict(weights[name])
        module.eval()
    return AsgnetState(trained, Units.from_json(info["indexed"]), Units.from_json(info["check"]))
