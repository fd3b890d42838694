"""A vocabulary grows by templates marked normal: old keys keep their ids, and the key model
grown with it answers every old window as before."""

import numpy as np
import pytest
import torch

from export.contract.vocab import FIRST_KEY, UNKNOWN, KeyVocabulary
from export.deeplog_keys import KeyLSTM, KeyModelConfig, grown_key_model


def test_a_grown_vocabulary_keeps_every_old_id_and_names_the_new_keys():
    old = KeyVocabulary(("T1", "T2", "T4"), ("a <*>", "b", "c"), "[header]\n")
    grown = old.grown(("d <*>", "e"))
    assert grown.size == old.size + 2 and grown.extends(old) and not old.extends(grown)
    assert [grown.key_of_name(n) for n in old.names] == [FIRST_KEY, FIRST_KEY + 1, FIRST_KEY + 2]
    assert grown.names[3:] == ("T5", "T6")  # the next free names: T4 is taken
    assert grown.fingerprint != old.fingerprint and grown.log_format == old.log_format
    other_format = KeyVocabulary(old.names, old.templates, "[header]\nother\n")
    assert not other_format.grown(("d <*>",)).extends(old)


def test_a_grown_key_model_answers_old_windows_as_before_and_scores_new_keys_as_unknown():
    torch.manual_seed(0)
    config = KeyModelConfig(hidden=8, embedding=4, layers=1, window=3)
    model = KeyLSTM(7, config).eval()
    grown = grown_key_model(model, config, 9).eval()
    windows = torch.from_numpy(np.random.default_rng(0).integers(0, 7, (20, 3)))
    with torch.no_grad():
        before, after = model(windows), grown(windows)
        np.testing.assert_allclose(after[:, :7], before, atol=1e-6)
        np.testing.assert_allclose(after[:, 7], before[:, UNKNOWN], atol=1e-6)
        new_key_windows = windows.clone()
        new_key_windows[:, -1] = 8
        unknown_windows = windows.clone()
        unknown_windows[:, -1] = UNKNOWN
        np.testing.assert_allclose(grown(new_key_windows), grown(unknown_windows), atol=1e-6)
    with pytest.raises(ValueError, match="cannot shrink"):
        grown_key_model(model, config, 5)
