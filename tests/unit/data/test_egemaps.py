"""eGeMAPSv02 functionals: openSMILE's own numbers, 88 named columns, a content-keyed cache shared
across clip orders, bad audio."""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import pldistill.data.egemaps as egemaps_module
from pldistill.data import EGEMAPS_DIM, compute_egemaps, egemaps_names, load_audio, load_fold
from pldistill.errors import InputError


@pytest.fixture(scope="module")
def clips(small_corpus: Path) -> list:
    return load_fold(small_corpus, "synthetic", 1, val_fraction=0.0).test[:6]


def test_values_are_opensmiles_and_names_are_the_88_functionals(clips: list, tmp_path: Path) -> None:
    import opensmile

    feats = compute_egemaps(clips, tmp_path)
    assert feats.values.shape == (6, EGEMAPS_DIM) and feats.values.dtype == np.float32
    assert feats.keys == tuple(c.key for c in clips) and len(feats.names) == EGEMAPS_DIM == len(set(feats.names))
    assert feats.names == egemaps_names()
    assert {"F0semitoneFrom27.5Hz_sma3nz_amean", "loudness_sma3_amean", "HNRdBACF_sma3nz_amean"} <= set(feats.names)
    assert np.isfinite(feats.values).all()
    # Independent reference: openSMILE called directly on the file's samples.
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    ref = smile.process_signal(load_audio(clips[2]), 16000)
    np.testing.assert_allclose(feats.values[2], ref.to_numpy()[0], rtol=1e-6)
    np.testing.assert_array_equal(feats.column("loudness_sma3_amean"), feats.values[:, feats.names.index(
        "loudness_sma3_amean")])
    assert feats.rows([clips[4].key, clips[0].key]).tolist() == feats.values[[4, 0]].tolist()


def test_cache_is_reused_for_any_order_and_keyed_by_content(clips: list, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    first = compute_egemaps(clips, tmp_path)
    cached = list(tmp_path.glob("egemaps-*.npz"))
    assert len(cached) == 1 and cached[0].name == f"egemaps-{first.content_key}.npz"
    with zipfile.ZipFile(cached[0]) as z:  # plain arrays only: loadable without pickle
        assert sorted(z.namelist()) == ["keys.npy", "names.npy", "skipped.npy", "values.npy"]

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("eGeMAPS recomputed")

    monkeypatch.setattr(egemaps_module, "_compute", fail)
    backwards = compute_egemaps(clips[::-1], tmp_path)
    assert backwards.content_key == first.content_key and backwards.keys == first.keys[::-1]
    np.testing.assert_array_equal(backwards.values, first.values[::-1])
    with pytest.raises(AssertionError, match="recomputed"):  # another clip set is another entry
        compute_egemaps(clips[:4], tmp_path)
    cached[0].write_bytes(b"damaged")
    monkeypatch.undo()
    again = compute_egemaps(clips, tmp_path)  # a damaged file is recomputed, not trusted
    np.testing.assert_array_equal(again.values, first.values)


def test_bad_audio_fails_or_is_skipped(clips: list, tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    some = [clips[0], replace(clips[1], wav=broken), clips[2]]
    with pytest.raises(InputError) as exc:
        compute_egemaps(some)
    assert exc.value.field == "wav" and str(broken) in str(exc.value)
    feats = compute_egemaps(some, on_bad_audio="skip")
    assert feats.keys == (clips[0].key, clips[2].key) and feats.skipped == (clips[1].key,)
    assert feats.values.shape == (2, EGEMAPS_DIM)
