"""The teacher cache: frozen encoder and teacher outputs computed once per sweep, read by every trial.

In a sweep the audio encoder and the teacher are frozen, so what they produce for a clip is the
same in every trial and epoch. Per clip the cache holds exactly what the losses and the evaluation
read. For every clip of the fold:

- ``encoded``: the encoder output rows the student's projector takes, ``(n_audio, D_enc)``.

For the fold's *training* clips only (``teacher`` column true; the losses never see val and test
clips, which the evaluation scores from ``encoded`` alone, so the teacher LLM never runs on them):

- ``teacher_audio``: the teacher's projector rows, ``(n_audio, E_t)`` (CKA, relation terms);
- ``attention``: for **every** teacher layer, heads averaged, the attention of each response
  token row to the audio columns, ``(n_layers, n_response, n_audio)`` (all weighting variants);
- ``hidden_audio`` / ``hidden_response``: the teacher's final hidden states at the audio
  positions and at the positions whose logits predict the response, ``(n, H_t)``; the teacher's
  logits there are recomputed exactly from them and its ``lm_head`` weight, which is stored once
  in the folder (``lm_head.safetensors``), cut to the tokenizer's vocabulary;
- ``hidden_response_text``: the final hidden states of the teacher's *text-only* path (the same
  prompt and response without the audio, ``text_only_inputs``) at the same response positions,
  ``(n_response, H_t)``, for CAAD: its contrastive teacher ``(1 + a) z_audio - a z_text`` is the
  ``lm_head`` of ``(1 + a) h_audio - a h_text`` exactly (``pldistill.losses.contrastive``), so one
  cache serves every ``a``. Always stored: one short text-only forward per training clip.

Every teacher output is forced on the clip's *pseudo target* (``hparams.pseudo_target``): the gold
answer (``label``, the student's CE target too), or the answer composed from the clip's audio
(``metadata``, :mod:`pldistill.train.pseudo_target`), whose response rows differ in number and
content; the key then says so, and a step reads those rows against the student forced on the same
target (:func:`pldistill.train.step.distill_step`'s ``pseudo``).

Prompt positions enter no loss, so nothing is stored for them. Layout of a cache folder::

    <cache_dir>/teacher_outputs/<key>/
        rows/*.arrow          one row per clip: key (the sample id), teacher flag, sizes, flattened arrays
        lm_head.safetensors   weight (V, H_t) [+ bias]
        meta.json             written last; a folder without it is never read

The key hashes everything the outputs depend on (the teacher's own cache key, which covers the
teacher spec, its fine-tune, the fold's features ``content_key``, window, labels and prompt
template; plus every clip key, which of them are training clips, the compute and storage dtypes,
the pseudo target under ``metadata`` and :data:`CACHE_VERSION`). The
folder is built in a temporary folder and renamed into place whole (``atomic_dir``), under a file
lock. Rows are joined back by ``key`` (Ray Data does not keep order) and read with pyarrow: no pickle.

The rows are uncompressed Arrow IPC files, which :class:`TeacherCache` memory-maps: opening a
cache reads nothing but the keys and sizes, a clip's arrays are read (copied) when a batch asks for
them, and the concurrent trials on a node share one copy in the page cache. At real sizes this
is what makes the cache usable at all: a training clip of a 30 s window holds ~6.4M values
(750 audio rows of the encoder, the teacher projector and the teacher's hidden states), so an
IEMOCAP fold is tens of GB even in bfloat16.

Storage: ``float32`` (exact: trials reproduce the online losses to fp32 rounding) or ``bfloat16``
(half the disk and memory, for real runs; values are then rounded, so no longer exact).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pldistill._fs import build_once
from pldistill.config import TrialConfig, config_hash
from pldistill.models.audiolm import AudioLMHead, EncodedAudio, capture_attention, encode_audio
from pldistill.models.inputs import Example, PromptTemplate, collate, pseudo_target_inputs, text_only_inputs
from pldistill.train.dataset import FoldData

__all__ = [
    "CACHE_VERSION",
    "ARRAY_COLUMNS",
    "CachedTeacherBatch",
    "TeacherCache",
    "teacher_cache_key",
    "teacher_cache_dir",
    "teacher_cache_complete",
    "teacher_dims",
    "teacher_rows",
    "cache_rows",
    "fold_examples",
    "cache_examples",
    "teacher_clips",
    "ensure_teacher_cache",
    "write_rows",
    "read_rows",
]

#: Bump when the stored rows would change.
CACHE_VERSION = 4
#: Per-clip arrays, stored flattened (``list<float32>``, or ``list<int16>`` holding bfloat16 bits).
ARRAY_COLUMNS = ("encoded", "teacher_audio", "attention", "hidden_audio", "hidden_response", "hidden_response_text")
_COMPLETE = "meta.json"


def fold_examples(data: FoldData) -> list[Example]:
    """Every clip of the fold once (train, unlabelled, val, test): the rows a cache holds. The
    unlabelled clips carry their gold labels here; :func:`cache_examples` gives what the rows use."""
    return [*data.train, *data.unlabelled, *data.val, *data.test]


def teacher_clips(data: FoldData) -> set[str]:
    """The clips the losses read the teacher on (labelled and unlabelled training clips)."""
    return {ex.key for ex in (*data.train, *data.unlabelled)}


def cache_examples(cfg: TrialConfig, data: FoldData) -> list[Example]:
    """:func:`fold_examples` with each unlabelled clip's response the teacher's answer (what the
    distillation terms are forced on; ``pldistill.train.teacher.answered``), training clips first."""
    from pldistill.train.teacher import answered

    return [*data.train, *answered(cfg, data), *data.val, *data.test]


def teacher_cache_key(cfg: TrialConfig, data: FoldData) -> str:
    """Content hash of everything the cached outputs depend on (see the module docstring)."""
    from pldistill.data.pseudo_target import PSEUDO_TARGET_VERSION
    from pldistill.train.teacher import teacher_key

    # under ``label`` nothing is added, so the caches built before ``metadata`` existed stay valid
    pseudo = {"pseudo_target": ["metadata", PSEUDO_TARGET_VERSION]} if cfg.hparams.pseudo_target == "metadata" else {}
    return config_hash({
        "teacher": teacher_key(cfg, data), "features": data.features_key, "window_s": data.window_s,
        "labels": data.labels, "template": repr(PromptTemplate()), "dtype": cfg.model.dtype,
        "storage": cfg.model.teacher_cache_dtype, "clips": sorted(ex.key for ex in fold_examples(data)),
        "teacher_clips": sorted(teacher_clips(data)), "v": CACHE_VERSION, **pseudo,
    })


def teacher_cache_dir(cfg: TrialConfig, data: FoldData) -> Path:
    return cfg.cache_dir / "teacher_outputs" / teacher_cache_key(cfg, data)


def teacher_cache_complete(cfg: TrialConfig, data: FoldData) -> bool:
    """Whether the fold's cache is built (then a trial needs no teacher LLM at all)."""
    return (teacher_cache_dir(cfg, data) / _COMPLETE).is_file()


# ----------------------------------------------------------------------------------------- writing


def cache_rows(teacher: Any, examples: Sequence[Example], labels: Sequence[str], *, teacher_keys: set[str],
               storage: str = "float32", pseudo_targets: Mapping[str, str] | None = None) -> Any:
    """:func:`teacher_rows` for a mixed batch: teacher outputs for the clips in ``teacher_keys`` (the
    fold's training clips), the encoder output alone for the others."""
    import pyarrow as pa

    train = [ex for ex in examples if ex.key in teacher_keys]
    other = [ex for ex in examples if ex.key not in teacher_keys]
    tables = [teacher_rows(teacher, part, labels, storage=storage, teacher_outputs=flag,
                           pseudo_targets=pseudo_targets if flag else None)
              for part, flag in ((train, True), (other, False)) if part]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


@torch.no_grad()
def teacher_rows(teacher: Any, examples: Sequence[Example], labels: Sequence[str], *,
                 storage: str = "float32", teacher_outputs: bool = True,
                 pseudo_targets: Mapping[str, str] | None = None) -> Any:
    """Run the encoder (and, with ``teacher_outputs``, the teacher) once on ``examples``: a
    ``pyarrow.Table`` with one row per clip. Without ``teacher_outputs`` only ``encoded`` is filled.
    ``pseudo_targets`` (key -> answer, ``pseudo_target: metadata``): the teacher is forced on these
    answers instead of the gold ones (:func:`pseudo_target_inputs`; the same audio and prompt layout).

    ``teacher`` is a :class:`pldistill.models.loading.Teacher` (frozen, eval mode, window set).
    The forward is the one :func:`pldistill.train.step.distill_step` runs online.
    """
    import pyarrow as pa

    head = AudioLMHead(teacher.model)
    device = next(head.parameters()).device
    inputs = (collate(list(examples), teacher.tokenizer, labels) if pseudo_targets is None else
              pseudo_target_inputs(list(examples), teacher.tokenizer, labels, pseudo_targets)).to(device)
    enc = encode_audio(teacher.audio_tower, inputs.input_features, inputs.feature_attention_mask)
    n_audio = int(enc.num_tokens.max())
    feats, ntok = enc.features[:, :n_audio], enc.num_tokens
    per_clip: dict[str, list[Tensor]] = {c: [] for c in ARRAY_COLUMNS}
    n_response = inputs.response_mask.sum(-1) if teacher_outputs else torch.zeros_like(ntok)
    if teacher_outputs:
        with capture_attention(head.core.language_model, inputs.attention_mask, "all") as attn:
            teacher_audio, hidden, _ = head(feats, ntok, inputs.input_ids, inputs.attention_mask, None)
        heads_mean = torch.stack([a.sum(dim=1) / a.shape[1] for a in attn])  # (layers, B, L, L) fp32
        rows = inputs.response_token_mask
        text = text_only_inputs(inputs)
        _, text_hidden, _ = head(None, None, text.input_ids, text.attention_mask, None)
    for i in range(len(inputs)):
        n = int(ntok[i])
        per_clip["encoded"].append(feats[i, :n])
        if not teacher_outputs:
            for c in ARRAY_COLUMNS[1:]:
                per_clip[c].append(feats.new_zeros(0))
            continue
        a, r = inputs.audio_mask[i], inputs.response_mask[i]
        per_clip["teacher_audio"].append(teacher_audio[i, :n])
        per_clip["attention"].append(heads_mean[:, i][:, rows[i]][:, :, a])
        per_clip["hidden_audio"].append(hidden[i][a])
        per_clip["hidden_response"].append(hidden[i][r])
        per_clip["hidden_response_text"].append(text_hidden[i][text.response_mask[i]])  # same rows, same order
    columns: dict[str, Any] = {
        "key": pa.array(inputs.keys, pa.string()),
        "teacher": pa.array([teacher_outputs] * len(inputs), pa.bool_()),
        "n_audio": pa.array(ntok.cpu().numpy().astype(np.int32)),
        "n_response": pa.array(n_response.cpu().numpy().astype(np.int32)),
    }
    for name, tensors in per_clip.items():
        columns[name] = _list_column(tensors, "float32" if name == "attention" else storage)
    return pa.table(columns)


def _list_column(tensors: list[Tensor], storage: str) -> Any:
    import pyarrow as pa

    flat = [t.detach().reshape(-1).cpu() for t in tensors]
    offsets = np.concatenate([[0], np.cumsum([t.numel() for t in flat])]).astype(np.int64)
    values = torch.cat(flat) if flat else torch.zeros(0)
    if storage == "bfloat16":  # bf16 bits as int16: Arrow has no bf16 type
        arr = pa.array(values.to(torch.bfloat16).view(torch.int16).numpy())
    else:
        arr = pa.array(values.to(torch.float32).numpy())
    return pa.LargeListArray.from_arrays(pa.array(offsets), arr)


def write_rows(table: Any, path: Path) -> None:
    """One rows file: Arrow IPC, uncompressed, so that readers memory-map it."""
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_rows(rows_dir: Path) -> Any:
    """Every rows file of a folder as one table whose buffers are the memory-mapped files (no copy)."""
    import pyarrow as pa

    tables = []
    for f in sorted(rows_dir.glob("*.arrow")):
        with pa.memory_map(str(f), "r") as source:  # the buffers keep the mapping alive
            tables.append(pa.ipc.open_file(source).read_all())
    if not tables:
        raise FileNotFoundError(f"{rows_dir} holds no rows files (*.arrow)")
    return pa.concat_tables(tables)


def _write_rows_locally(teacher: Any, cfg: TrialConfig, data: FoldData, rows_dir: Path, batch_size: int,
                        log: Callable[[str], None], pseudo_targets: Mapping[str, str] | None) -> None:
    """The in-process builder (no Ray): what a trial falls back on when it finds no cache."""
    from pldistill.progress import StepProgress

    storage = cfg.model.teacher_cache_dtype
    examples = cache_examples(cfg, data)  # training clips first: batches mostly of one kind
    train = teacher_clips(data)
    with StepProgress(len(examples), f"teacher cache fold {data.fold}", unit="clips", log=log, tty=False) as bar:
        for part, start in enumerate(range(0, len(examples), batch_size)):
            table = cache_rows(teacher, examples[start:start + batch_size], data.labels, teacher_keys=train,
                               storage=storage, pseudo_targets=pseudo_targets)
            write_rows(table, rows_dir / f"part-{part:05d}.arrow")
            bar.advance(table.num_rows)


def _finish(tmp: Path, teacher: Any, data: FoldData, cfg: TrialConfig, key: str) -> dict[str, Any]:
    """Check the rows cover every clip exactly once, then write the lm_head and, last, meta.json."""
    from safetensors.torch import save_file

    written = read_rows(tmp / "rows")
    keys = written.column("key").to_pylist()
    expected = sorted(ex.key for ex in fold_examples(data))
    if sorted(keys) != expected:
        raise RuntimeError(f"teacher cache for fold {data.fold}: {len(keys)} rows written, "
                           f"{len(expected)} clips expected (missing or duplicated sample ids)")
    with_teacher = sorted(k for k, t in zip(keys, written.column("teacher").to_pylist()) if t)
    if with_teacher != sorted(teacher_clips(data)):
        raise RuntimeError(f"teacher cache for fold {data.fold}: teacher outputs for {len(with_teacher)} clips, "
                           f"expected for the {len(teacher_clips(data))} training clips")
    vocab = len(teacher.tokenizer)
    lm_head = teacher.model.lm_head
    tensors = {"weight": lm_head.weight[:vocab].detach().cpu().contiguous()}
    if getattr(lm_head, "bias", None) is not None:
        tensors["bias"] = lm_head.bias[:vocab].detach().cpu().contiguous()
    save_file(tensors, str(tmp / "lm_head.safetensors"))
    meta = {"key": key, "version": CACHE_VERSION, "fold": data.fold, "rows": len(keys),
            "teacher_rows": len(with_teacher), "storage": cfg.model.teacher_cache_dtype, "vocab": vocab,
            **teacher_dims(teacher)}
    (tmp / _COMPLETE).write_text(json.dumps(meta, indent=2))
    return meta


def teacher_dims(teacher: Any) -> dict[str, int]:
    """The sizes a reader needs to reshape the flat rows (part of ``meta.json``)."""
    text = teacher.model.config.text_config
    return {"layers": int(text.num_hidden_layers), "hidden": int(text.hidden_size),
            "encoder_dim": int(teacher.model.config.audio_config.d_model),
            "projector_dim": int(teacher.model.model.multi_modal_projector.linear.out_features)}


def ensure_teacher_cache(cfg: TrialConfig, data: FoldData, teacher: Any, *, log: Callable[[str], None] = print,
                         write_rows: Callable[[Path], None] | None = None, batch_size: int = 16,
                         pseudo_targets: Mapping[str, str] | None = None) -> Path:
    """The fold's cache folder, built first if missing (idempotent; concurrent callers wait).

    ``write_rows(folder)`` writes the rows files (the Ray Data builder passes one); by default
    they are computed in this process with ``teacher``, forced on ``pseudo_targets`` under
    ``pseudo_target: metadata`` (:func:`~pldistill.train.pseudo_target.fold_pseudo_targets` when None).
    """
    if pseudo_targets is not None and cfg.hparams.pseudo_target == "label":
        raise ValueError("pseudo targets given for a 'label' cache: its key would not say so")
    key = teacher_cache_key(cfg, data)
    final = cfg.cache_dir / "teacher_outputs" / key

    def build(tmp: Path) -> None:
        nonlocal pseudo_targets
        log(f"teacher cache fold {data.fold}: building {final}")
        (tmp / "rows").mkdir()
        if write_rows is None:
            if pseudo_targets is None and cfg.hparams.pseudo_target != "label":
                from pldistill.train.pseudo_target import fold_pseudo_targets

                pseudo_targets = fold_pseudo_targets(cfg, data)
            _write_rows_locally(teacher, cfg, data, tmp / "rows", batch_size, log, pseudo_targets)
        else:
            write_rows(tmp / "rows")
        _finish(tmp, teacher, data, cfg, key)

    build_once(final, _COMPLETE, build, what=f"teacher cache fold {data.fold}")
    return final


# ----------------------------------------------------------------------------------------- reading


@dataclass
class CachedTeacherBatch:
    """A batch's cached rows, padded where they stack. ``B`` clips, ``T`` most audio tokens."""

    encoded: EncodedAudio  #: features (B, T, D_enc) zero-padded, num_tokens (B,)
    teacher_audio: Tensor  #: (B, T, E_t) zero-padded
    attention: list[Tensor]  #: per clip (n_layers, n_response, n_audio)
    hidden_audio: Tensor  #: (sum of n_audio, H_t), clips one after another
    hidden_response: Tensor  #: (sum of n_response, H_t)
    hidden_response_text: Tensor  #: (sum of n_response, H_t): the text-only path's (CAAD)

    def teacher_hidden(self, audio_mask: Tensor, response_mask: Tensor) -> Tensor:
        """``(B, L, H_t)``: the cached hidden states put back at their positions, zeros elsewhere."""
        if int(audio_mask.sum()) != self.hidden_audio.shape[0] or \
                int(response_mask.sum()) != self.hidden_response.shape[0]:
            raise ValueError("cached teacher rows do not match the batch's audio/response positions")
        out = self.hidden_audio.new_zeros((*audio_mask.shape, self.hidden_audio.shape[1]))
        out[audio_mask] = self.hidden_audio
        out[response_mask] = self.hidden_response
        return out

    def teacher_text_hidden(self, response_mask: Tensor) -> Tensor:
        """``(B, L, H_t)``: the text-only path's hidden states at the batch's response positions (the
        same response tokens, so the same rows in the same order), zeros elsewhere."""
        if int(response_mask.sum()) != self.hidden_response_text.shape[0]:
            raise ValueError("cached text-only rows do not match the batch's response positions")
        out = self.hidden_response_text.new_zeros((*response_mask.shape, self.hidden_response_text.shape[1]))
        out[response_mask] = self.hidden_response_text
        return out


class TeacherCache:
    """A complete cache folder, memory-mapped; rows looked up by clip key, read when asked for."""

    def __init__(self, path: str | Path) -> None:
        from safetensors.torch import load_file

        self.path = Path(path)
        meta_file = self.path / _COMPLETE
        if not meta_file.is_file():
            raise FileNotFoundError(f"{self.path} is not a complete teacher cache (no {_COMPLETE})")
        self.meta: dict[str, Any] = json.loads(meta_file.read_text())
        self._load_rows(read_rows(self.path / "rows"))
        head = load_file(str(self.path / "lm_head.safetensors"))
        self.lm_head_weight: Tensor = head["weight"]
        self.lm_head_bias: Tensor | None = head.get("bias")

    @classmethod
    def from_table(cls, table: Any, meta: dict[str, Any], path: str | Path = "<memory>") -> TeacherCache:
        """A reader over rows in memory (``teacher_rows`` output) with a cache's ``meta``; no lm_head."""
        cache = cls.__new__(cls)
        cache.path, cache.meta, cache.lm_head_weight, cache.lm_head_bias = Path(path), meta, torch.zeros(0), None
        cache._load_rows(table)
        return cache

    def _load_rows(self, table: Any) -> None:
        keys = table.column("key").to_pylist()
        self._index = {k: i for i, k in enumerate(keys)}
        if len(self._index) != len(keys):
            raise ValueError(f"{self.path}: duplicated sample ids")
        self._teacher = table.column("teacher").to_numpy(zero_copy_only=False)
        self._n = {c: table.column(c).to_numpy().astype(np.int64) for c in ("n_audio", "n_response")}
        # Row i lives in chunk _chunk[i] at _local[i] (one chunk per rows file / record batch); the
        # chunks' arrays stay views of the mapped files (combining them would copy everything).
        lengths = [len(c) for c in table.column("key").chunks]
        self._chunk = np.repeat(np.arange(len(lengths)), lengths)
        self._local = np.concatenate([np.arange(n) for n in lengths]) if lengths else np.zeros(0, np.int64)
        self._arrays = {c: [_flat(chunk) for chunk in table.column(c).chunks] for c in ARRAY_COLUMNS}

    def lm_head_on(self, device: torch.device | str) -> Tensor:
        """The ``lm_head`` weight on ``device``, moved once (at real sizes it is ~2.5 GB in fp32)."""
        device = torch.device(device)
        if self.lm_head_weight.device != device:
            self.lm_head_weight = self.lm_head_weight.to(device)
        return self.lm_head_weight

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def row(self, key: str, column: str) -> Tensor:
        """One clip's array in its shape, float32."""
        try:
            i = self._index[key]
        except KeyError:
            raise KeyError(f"clip {key!r} is not in the teacher cache {self.path}") from None
        if column != "encoded" and not self._teacher[i]:
            raise KeyError(f"clip {key!r} is not a training clip of {self.path}: the cache holds only its "
                           f"encoder output (teacher outputs are stored for training clips)")
        offsets, values = self._arrays[column][self._chunk[i]]
        j = self._local[i]
        flat = torch.from_numpy(values[offsets[j]:offsets[j + 1]].copy())  # mapped Arrow buffers are read-only
        if flat.dtype == torch.int16:
            flat = flat.view(torch.bfloat16)
        return flat.float().view(self._shape(i, column))

    def _shape(self, i: int, column: str) -> tuple[int, ...]:
        na, nr, m = int(self._n["n_audio"][i]), int(self._n["n_response"][i]), self.meta
        return {"encoded": (na, m["encoder_dim"]), "teacher_audio": (na, m["projector_dim"]),
                "attention": (m["layers"], nr, na), "hidden_audio": (na, m["hidden"]),
                "hidden_response": (nr, m["hidden"]), "hidden_response_text": (nr, m["hidden"])}[column]

    def encoded(self, keys: Sequence[str], device: torch.device | str = "cpu") -> EncodedAudio:
        """The cached encoder output of ``keys``, as :func:`encode_audio` gives it (zero-padded)."""
        rows = [self.row(k, "encoded") for k in keys]
        return EncodedAudio(features=_pad(rows).to(device),
                            num_tokens=torch.tensor([r.shape[0] for r in rows], device=device))

    def batch(self, keys: Sequence[str], device: torch.device | str = "cpu") -> CachedTeacherBatch:
        return CachedTeacherBatch(
            encoded=self.encoded(keys, device),
            teacher_audio=_pad([self.row(k, "teacher_audio") for k in keys]).to(device),
            attention=[self.row(k, "attention").to(device) for k in keys],
            hidden_audio=torch.cat([self.row(k, "hidden_audio") for k in keys]).to(device),
            hidden_response=torch.cat([self.row(k, "hidden_response") for k in keys]).to(device),
            hidden_response_text=torch.cat([self.row(k, "hidden_response_text") for k in keys]).to(device),
        )


def _flat(arr: Any) -> tuple[np.ndarray, np.ndarray]:
    """One chunk of a (large) list column as offsets into its flat values array, both numpy views of
    the Arrow buffers (no copy: for a memory-mapped file, views of the mapping)."""
    return arr.offsets.to_numpy(), arr.values.to_numpy()


def _pad(rows: list[Tensor]) -> Tensor:
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
