"""ASGNet's S-Net: a small RoBERTa pre-trained on log text (no hub), exported to ONNX."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from export.contract.specs import ASGNET_SNET
from export.contract.units import unit_text
from export.hdfs_data import HDFS_EVENTS
from export.input_guard import InputGuard, widths_of
from export.log_tokenizer import SPECIAL_TOKENS, encode, save_tokenizer, train_tokenizer
from export.onnx_export import check_parity, export_onnx
from export.snet import (
    MASK,
    SNet,
    SNetConfig,
    load_checkpoint,
    mask_tokens,
    new_encoder,
    pretrain_mlm,
)

CONFIG = SNetConfig(
    hidden=32,
    layers=1,
    heads=2,
    intermediate=64,
    max_length=48,
    info_dim=8,
    mlm_epochs=30,
    batch_size=16,
    learning_rate=2e-3,
)
TEMPLATES = list(HDFS_EVENTS.values())


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    texts = [unit_text(list(rng.choice(TEMPLATES[:8], 4))) for _ in range(120)]
    tokenizer = train_tokenizer(texts, vocab_size=300, max_length=CONFIG.max_length)
    return tokenizer, *encode(tokenizer, texts)


def test_masking_touches_only_ordinary_tokens_and_labels_only_the_masked():
    torch.manual_seed(0)
    ids = torch.randint(len(SPECIAL_TOKENS), 100, (64, 40))
    ids[:, 0], ids[:, -1] = 0, 2
    attention = torch.ones_like(ids)
    inputs, labels = mask_tokens(ids, attention, 0.15, 100)
    chosen = labels != -100
    assert 0.1 < chosen.float().mean() < 0.2
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert (labels[chosen] == ids[chosen]).all()
    assert 0.7 < (inputs[chosen] == MASK).float().mean() < 0.9
    assert (inputs[~chosen] == ids[~chosen]).all()


def test_pretraining_on_log_text_lowers_the_masked_lm_loss(corpus):
    tokenizer, ids, mask = corpus
    encoder = new_encoder(tokenizer.get_vocab_size(), CONFIG)
    first = pretrain_mlm(encoder, ids, mask, replace(CONFIG, mlm_epochs=1), False)
    report = pretrain_mlm(encoder, ids, mask, CONFIG, progress=False)
    assert report.final_loss < 0.6 * first.final_loss


def test_a_local_checkpoint_loads_with_its_own_tokenizer(corpus, tmp_path):
    tokenizer, _, _ = corpus
    encoder = new_encoder(tokenizer.get_vocab_size(), CONFIG)
    encoder.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no tokenizer\.json"):
        load_checkpoint(tmp_path, CONFIG.max_length)
    save_tokenizer(tokenizer, tmp_path)
    loaded, loaded_tokenizer = load_checkpoint(tmp_path, CONFIG.max_length)
    for a, b in zip(encoder.state_dict().values(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    text = "PacketResponder <*> for block <*> terminating"
    assert loaded_tokenizer.encode(text).ids == tokenizer.encode(text).ids
    with pytest.raises(ValueError, match=r"needs .* positions"):
        load_checkpoint(tmp_path, CONFIG.max_length * 2)
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        load_checkpoint(tmp_path / "nothing", CONFIG.max_length)


@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_runtime_agrees_with_pytorch_for_any_batch_and_length(corpus, tmp_path, batch):
    tokenizer, ids, mask = corpus
    snet = SNet(new_encoder(tokenizer.get_vocab_size(), CONFIG).roberta, CONFIG, classes=3).eval()
    example = {"INPUT_IDS": torch.from_numpy(ids[:2]), "ATTENTION_MASK": torch.from_numpy(mask[:2])}
    ranges = {"INPUT_IDS": (0, tokenizer.get_vocab_size()), "ATTENTION_MASK": (0, 2)}
    guarded = InputGuard(snet, ASGNET_SNET, ranges, widths_of(ASGNET_SNET, example)).eval()
    path = export_onnx(guarded, example, tmp_path / "model.onnx")
    short_ids, short_mask = encode(tokenizer, [TEMPLATES[0]] * batch)  # another token count
    check_parity(snet, ASGNET_SNET, {"INPUT_IDS": short_ids, "ATTENTION_MASK": short_mask}, path)
    check_parity(
        snet, ASGNET_SNET, {"INPUT_IDS": ids[:batch], "ATTENTION_MASK": mask[:batch]}, path
    )
    with torch.no_grad():
        _, probs, confidence = snet(torch.from_numpy(ids[:batch]), torch.from_numpy(mask[:batch]))
    torch.testing.assert_close(confidence[:, 0], probs.max(dim=1).values)
