"""EmoBox manifests: the real benchmark files, fixture datasets for every error, validation splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pldistill.data import (
    DATASETS,
    load_fold,
    load_manifest,
    load_transcripts,
    resolve_dataset,
    speaker_of,
    split_validation,
)
from pldistill.data.emobox import Clip
from pldistill.errors import InputError

# --- the real manifests ------------------------------------------------------------------------

REAL = {"iemocap": (5, 10), "ravdess": (6, 24), "savee": (4, 4)}  # folds, speakers in all


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_manifests_structure(emobox_dir: Path, name: str) -> None:
    folds, n_speakers = REAL[name]
    spec, _ = resolve_dataset(emobox_dir, name)
    assert spec == DATASETS[name] and spec.num_folds == folds
    all_test_keys: list[str] = []
    speakers: set[str] = set()
    for k in range(1, folds + 1):
        split = load_fold(emobox_dir, name, k, val_fraction=0.0)
        assert split.labels == DATASETS[name].labels
        assert {c.label for c in split.train} == set(spec.labels) == {c.label for c in split.test}
        train_spk = {c.speaker for c in split.train}
        test_spk = {c.speaker for c in split.test}
        assert None not in train_spk | test_spk
        assert not train_spk & test_spk, f"fold {k} is not speaker-independent"
        all_test_keys += [c.key for c in split.test]
        speakers |= test_spk
        assert all(c.wav.is_absolute() and c.wav.parts[-1].endswith(".wav") for c in split.test)
    assert len(speakers) == n_speakers
    assert len(all_test_keys) == len(set(all_test_keys))  # every clip is tested exactly once


def test_real_iemocap_merges_excited_into_happy(emobox_dir: Path) -> None:
    path = emobox_dir / "iemocap" / "fold_1" / "iemocap_test_fold_1.jsonl"
    raw = Counter(json.loads(line)["emo"] for line in path.read_text().splitlines())
    split = load_fold(emobox_dir, "IEMOCAP", 1, val_fraction=0.0)
    labels = Counter(c.label for c in split.test)
    assert raw["exc"] > 0 and raw["hap"] > 0
    assert labels["Happy"] == raw["hap"] + raw["exc"]
    assert set(labels) == {"Neutral", "Happy", "Angry", "Sad"}
    assert {c.speaker for c in split.test} == {"Ses01F", "Ses01M"}


def test_real_validation_split_is_speaker_disjoint(emobox_dir: Path) -> None:
    split = load_fold(emobox_dir, "ravdess", 2, val_fraction=0.15, val_seed=1)
    val_spk, train_spk = {c.speaker for c in split.val}, {c.speaker for c in split.train}
    assert not val_spk & train_spk and not val_spk & {c.speaker for c in split.test}
    assert len(split.val) / (len(split.val) + len(split.train)) >= 0.15
    assert len(val_spk) == 3  # 20 equal actors: three are the first set to reach 15 %
    assert {c.label for c in split.val} == set(split.labels)


@pytest.mark.parametrize(("dataset", "key", "speaker"), [
    ("iemocap", "iemocap-Ses03F_impro04_M017", "Ses03M"),  # the letter of the utterance, not the session
    ("iemocap", "iemocap-Ses05M_script01_1_F000", "Ses05F"),
    ("ravdess", "ravdess-03-01-07-02-02-02-11", "Actor_11"),
    ("savee", "savee-JE-sa08", "JE"),
    ("synthetic", "synthetic-S03F-hap-002", "S03F"),
    ("savee", "savee-XX-n01", None),
    ("emodb", "emodb-03a01Fa", None),
])
def test_speaker_of(dataset: str, key: str, speaker: str | None) -> None:
    assert speaker_of(dataset, key) == speaker


# --- fixture datasets: every error names file and field ---------------------------------------

LABEL_MAP = {"neu": "Neutral", "hap": "Happy", "ang": "Angry", "sad": "Sad", "exc": "Happy"}


def _good(record, prefix: str, n: int = 2) -> list[dict]:
    return [record(f"iemocap-Ses0{1 if prefix == 'test' else 2}F_impro01_F{i:03d}", emo,
                   dataset="iemocap") for i, emo in enumerate(["neu", "hap", "ang", "sad"] * n)]


def _expect(exc: pytest.ExceptionInfo[InputError], file: str | Path, field: str, *words: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(file) in msg and exc.value.field == field, msg
    for word in words:
        assert word in msg, msg


def test_loads_a_fixture_fold(write_dataset, record) -> None:
    root = write_dataset("iemocap", LABEL_MAP, {k: (_good(record, "train"), _good(record, "test")) for k in range(1, 6)})
    split = load_fold(root, "iemocap", 3, audio_root="/data/audio", val_fraction=0.0)
    assert split.fold == 3 and len(split.train) == 8 and len(split.test) == 8
    clip = split.test[0]
    assert clip.wav == Path("/data/audio") / "audio" / f"{clip.key}.wav"
    assert clip.line == 1 and clip.manifest.name == "iemocap_test_fold_3.jsonl"
    assert clip.label == "Neutral" and clip.speaker == "Ses01F" and clip.start_time is None


def test_missing_manifests_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load_fold(tmp_path / "nowhere", "savee", 1)
    _expect(exc, tmp_path / "nowhere" / "savee", "dataset", "no manifests folder")


def test_missing_label_map(write_dataset, record) -> None:
    root = write_dataset("savee", None, {1: ([record("savee-JE-n01", "n")], [record("savee-KL-n01", "n")])})
    with pytest.raises(InputError) as exc:
        load_fold(root, "savee", 1)
    _expect(exc, root / "savee" / "label_map.json", "label_map", "missing")


def test_missing_fold_file_names_expected_path(write_dataset, record) -> None:
    root = write_dataset("iemocap", LABEL_MAP, {1: (_good(record, "train"), _good(record, "test"))})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", 2)
    _expect(exc, root / "iemocap" / "fold_2" / "iemocap_train_fold_2.jsonl", "fold", "expected")


@pytest.mark.parametrize("fold", [0, 6])
def test_fold_out_of_range(write_dataset, record, fold: int) -> None:
    root = write_dataset("iemocap", LABEL_MAP, {1: (_good(record, "train"), _good(record, "test"))})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", fold)
    _expect(exc, root / "iemocap", "fold", f"fold {fold} out of range", "5 folds")


def test_line_not_json(write_dataset, record) -> None:
    test = [json.dumps(r) for r in _good(record, "test")]
    test[2] = test[2][:-5]
    root = write_dataset("iemocap", LABEL_MAP, {1: (_good(record, "train"), test)})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", 1)
    _expect(exc, f"{root / 'iemocap' / 'fold_1' / 'iemocap_test_fold_1.jsonl'}:3", "line", "not valid JSON")


@pytest.mark.parametrize("field", ["key", "wav", "emo", "sample_rate", "length", "channel"])
def test_missing_field(write_dataset, record, field: str) -> None:
    train = _good(record, "train")
    del train[4][field]
    root = write_dataset("iemocap", LABEL_MAP, {1: (train, _good(record, "test"))})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", 1)
    _expect(exc, f"{root / 'iemocap' / 'fold_1' / 'iemocap_train_fold_1.jsonl'}:5", field, "missing field")


@pytest.mark.parametrize(("field", "value", "words"), [
    ("sample_rate", "16k", "expected a number"),
    ("sample_rate", 0, "positive integer"),
    ("length", -1.0, "seconds > 0"),
    ("end_time", 0.0, "after start_time"),
    ("dataset", "savee", "expected 'iemocap'"),
])
def test_bad_field_values(write_dataset, record, field: str, value: object, words: str) -> None:
    test = _good(record, "test")
    test[0][field] = value
    root = write_dataset("iemocap", LABEL_MAP, {1: (_good(record, "train"), test)})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", 1)
    _expect(exc, f"{root / 'iemocap' / 'fold_1' / 'iemocap_test_fold_1.jsonl'}:1", field, words)


def test_unknown_label(write_dataset, record) -> None:
    test = _good(record, "test")
    test[3]["emo"] = "fru"
    root = write_dataset("iemocap", LABEL_MAP, {1: (_good(record, "train"), test)})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", 1)
    _expect(exc, f"{root / 'iemocap' / 'fold_1' / 'iemocap_test_fold_1.jsonl'}:4", "emo", "'fru'")


def test_label_map_disagreeing_with_known_dataset(write_dataset, record) -> None:
    root = write_dataset("iemocap", {**LABEL_MAP, "fru": "Frustrated"},
                         {1: (_good(record, "train"), _good(record, "test"))})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", 1)
    _expect(exc, root / "iemocap" / "label_map.json", "labels", "Frustrated", "disagree")


def test_empty_fold(write_dataset, record) -> None:
    root = write_dataset("iemocap", LABEL_MAP, {1: (_good(record, "train"), [])})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", 1)
    _expect(exc, root / "iemocap" / "fold_1" / "iemocap_test_fold_1.jsonl", "lines", "empty fold")


def test_key_in_train_and_test(write_dataset, record) -> None:
    train = _good(record, "train")
    test = _good(record, "test")
    train[1] = dict(test[0])
    root = write_dataset("iemocap", LABEL_MAP, {1: (train, test)})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", 1)
    _expect(exc, f"{root / 'iemocap' / 'fold_1' / 'iemocap_train_fold_1.jsonl'}:2", "key", "also in the test")


def test_unknown_dataset_reads_labels_and_folds_from_its_files(write_dataset, record) -> None:
    lm = {"W": "Anger", "N": "Neutral"}
    rows = [record(f"toy-{i}", "W" if i % 2 else "N", start_time=0.5, end_time=1.0) for i in range(6)]
    root = write_dataset("toy", lm, {1: (rows[:4], rows[4:]), 2: (rows[2:], rows[:2])})
    spec, _ = resolve_dataset(root, "toy")
    assert spec.labels == ("Anger", "Neutral") and spec.num_folds == 2
    split = load_fold(root, "toy", 2, val_fraction=0.25, val_seed=0)
    assert split.test[0].start_time == 0.5 and split.test[0].duration == 0.5
    # no speakers in the keys: stratified fallback, one of each label's two train clips
    assert sorted(c.label for c in split.val) == ["Anger", "Neutral"] and len(split.train) == 2
    with pytest.raises(InputError, match="fold 3 out of range: toy has 2 folds"):
        load_fold(root, "toy", 3)


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path: Path, record) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(record("toy-a")) + "\n\n" + json.dumps(record("toy-b", "hap")) + "\n")
    clips = load_manifest(path, {"neu": "Neutral", "hap": "Happy"}, tmp_path)
    assert [(c.key, c.line, c.label) for c in clips] == [("toy-a", 1, "Neutral"), ("toy-b", 3, "Happy")]


# --- validation split ---------------------------------------------------------------------------

def _clips(n_speakers: int, per_label: int, labels=("A", "B", "C"), speaker_known: bool = True) -> list[Clip]:
    out = []
    for s in range(n_speakers):
        for lab in labels:
            for i in range(per_label):
                out.append(Clip(key=f"k{s}-{lab}-{i}", dataset="toy", wav=Path(f"/x/{s}{lab}{i}.wav"), label=lab,
                                speaker=f"spk{s}" if speaker_known else None, sample_rate=16000, length=1.0,
                                start_time=None, end_time=None, manifest=Path("/m.jsonl"), line=len(out) + 1))
    return out


def test_split_validation_speaker_disjoint_reproducible_seeded() -> None:
    clips = _clips(10, 3)
    train, val = split_validation(clips, 0.25, seed=7)
    assert (train, val) == split_validation(clips, 0.25, seed=7)
    assert len(train) + len(val) == len(clips) and not {c.key for c in train} & {c.key for c in val}
    assert not {c.speaker for c in train} & {c.speaker for c in val}
    assert len(val) >= 0.25 * len(clips) and len({c.speaker for c in val}) == 3  # 9 clips each: 3 speakers
    assert {c.label for c in val} == {"A", "B", "C"}
    assert [c.line for c in train] == sorted(c.line for c in train)  # input order kept
    others = {tuple(sorted({c.speaker for c in split_validation(clips, 0.25, seed=s)[1]})) for s in range(8)}
    assert len(others) > 1  # the seed matters


def test_split_validation_prefers_speakers_covering_all_labels() -> None:
    clips = _clips(6, 2)
    clips = [c for c in clips if not (c.speaker in ("spk0", "spk1", "spk2") and c.label == "C")]
    for seed in range(5):
        _, val = split_validation(clips, 0.1, seed)
        assert {c.label for c in val} == {"A", "B", "C"}


def test_split_validation_falls_back_to_stratified() -> None:
    for clips in (_clips(4, 10, speaker_known=False), _clips(1, 10)):
        train, val = split_validation(clips, 0.2, seed=0)
        counts = Counter(c.label for c in val)
        assert set(counts) == {"A", "B", "C"} and sum(counts.values()) == len(val)
        assert all(abs(v - 0.2 * len(clips) / 3) <= 1 for v in counts.values())
        assert split_validation(clips, 0.2, seed=0) == (train, val)
    with pytest.raises(ValueError):
        split_validation(_clips(2, 2), 1.5, seed=0)


def test_load_fold_validation_comes_from_train(small_corpus: Path) -> None:
    split = load_fold(small_corpus, "synthetic", 1, val_fraction=0.2, val_seed=0)
    assert split.labels == ("Neutral", "Happy", "Angry", "Sad")
    assert len(split.val) == 8 and len(split.train) == 8 and len(split.test) == 16  # 2 train speakers: 1 held out
    spk = [{c.speaker for c in part} for part in (split.train, split.val, split.test)]
    assert not (spk[0] & spk[1] or spk[0] & spk[2] or spk[1] & spk[2])


# --- transcripts and lexical conditions ---------------------------------------------------------

def test_transcript_and_lexical_from_the_manifest(write_dataset, record) -> None:
    test = _good(record, "test")
    test[0].update(transcript="I am so happy.", lexical="congruent")
    test[1]["transcript"] = ""
    root = write_dataset("iemocap", LABEL_MAP, {1: (_good(record, "train"), test)})
    clips = load_fold(root, "iemocap", 1, val_fraction=0.0).test
    assert (clips[0].transcript, clips[0].lexical) == ("I am so happy.", "congruent")
    assert (clips[1].transcript, clips[1].lexical) == ("", None)
    assert (clips[2].transcript, clips[2].lexical) == (None, None)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("transcript", 3, "expected a string"), ("lexical", "ironic", "congruent"), ("lexical", 1, "conflict")])
def test_bad_transcript_or_lexical(write_dataset, record, field: str, value: object, words: str) -> None:
    test = _good(record, "test")
    test[1][field] = value
    root = write_dataset("iemocap", LABEL_MAP, {1: (_good(record, "train"), test)})
    with pytest.raises(InputError) as exc:
        load_fold(root, "iemocap", 1)
    _expect(exc, f"{root / 'iemocap' / 'fold_1' / 'iemocap_test_fold_1.jsonl'}:2", field, words)


def test_transcripts_file_fills_clips_without_one(write_dataset, record, tmp_path: Path) -> None:
    train, test = _good(record, "train"), _good(record, "test")
    test[0]["transcript"] = "from the manifest"
    root = write_dataset("iemocap", LABEL_MAP, {1: (train, test)})
    path = tmp_path / "transcripts.jsonl"
    rows = [{"key": r["key"], "transcript": f"said {r['key']}", "speaker": "ignored"} for r in train + test[:2]]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert load_transcripts(path)[train[3]["key"]] == f"said {train[3]['key']}"
    split = load_fold(root, "iemocap", 1, val_fraction=0.0, transcripts=path)
    assert all(c.transcript == f"said {c.key}" for c in split.train)
    assert split.test[0].transcript == "from the manifest"  # the manifest's own wins
    assert split.test[1].transcript == f"said {split.test[1].key}"
    assert split.test[2].transcript is None  # not in the file: unknown, not an error


@pytest.mark.parametrize(("text", "where", "field", "words"), [
    (None, "", "transcripts", "missing transcripts file"),
    ('{"key": "a", "transcript": "x"}\n{"key": "b", "transcript": ', ":2", "line", "not valid JSON"),
    ('["a", "x"]', ":1", "line", "JSON object"),
    ('{"key": "a"}', ":1", "transcript", "expected a string"),
    ('{"key": "", "transcript": "x"}', ":1", "key", "non-empty string"),
    ('{"key": "a", "transcript": "x"}\n{"key": "a", "transcript": "y"}', ":2", "key", "duplicate key 'a'"),
])
def test_bad_transcripts_file(tmp_path: Path, text: str | None, where: str, field: str, words: str) -> None:
    path = tmp_path / "t.jsonl"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_transcripts(path)
    _expect(exc, f"{path}{where}", field, words)


def test_synthetic_clips_carry_transcripts_into_examples(small_corpus: Path, tmp_path: Path) -> None:
    """prepare_fold hands transcript and lexical condition on to the model-ready examples."""
    from pldistill.config import TrialConfig
    from pldistill.train.dataset import prepare_fold

    cfg = TrialConfig.model_validate({"data": {"source": "synthetic", "manifests": str(small_corpus),
                                               "synth": {"speakers": 4, "teacher_speakers": 0, "per_class": 2, "folds": 2, "seed": 3},
                                               "window_s": 2.0},
                                      "cache_dir": str(tmp_path)})
    data = prepare_fold(cfg, 1)
    clips = {c.key: c for c in load_fold(small_corpus, "synthetic", 1, val_fraction=0.0).test}
    assert len(data.test) == len(clips)
    for ex in data.test:
        assert (ex.transcript, ex.lexical) == (clips[ex.key].transcript, clips[ex.key].lexical)
        assert ex.transcript and ex.lexical in ("congruent", "neutral", "conflict")
