"""What was run: the protocol block that travels with every number (report, launch summary, ``best``,
model card), and where it differs from the PL-Distill paper's section 3.1.

Everything here is read from resolved trial configs (the trials table's ``config_json``, or a trial's
own :class:`~pldistill.config.TrialConfig`), never written by hand, and the differences are computed
against one declared table, :data:`PAPER_SETTINGS`: change a sweep file and the block and its list of
differences change with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pldistill.config import TrialConfig

__all__ = ["PaperSetting", "PAPER_SETTINGS", "SweepProtocol", "describe", "paper_differences", "protocol_lines",
           "sweep_protocol"]

#: The paper's corpora (section 3.1: "IEMOCAP ..., RAVDESS ..., and SAVEE", EmoBox's partitions).
_PAPER_CORPORA = frozenset({"iemocap", "ravdess", "savee"})


@dataclass(frozen=True)
class PaperSetting:
    """One setting of the PL-Distill paper (section 3.1): ``read`` gives a trial's value (None: the
    setting does not apply to that trial, e.g. LoRA to a classifier student), ``same`` says whether a
    value is the paper's, ``paper`` says the paper's value in words, ``show`` a trial's."""

    name: str
    paper: str
    read: Callable[[TrialConfig], Any]
    same: Callable[[Any], bool]
    show: Callable[[Any], str] = str


def _is_audiolm(c: TrialConfig) -> bool:
    return c.student_family == "audiolm"


def _checkpoint_name(path: str) -> str:
    return "tiny" if path == "tiny" else Path(path).name


def _teacher_encoder(c: TrialConfig) -> str:
    """How the teacher's audio encoder (which every audio-LLM student shares, frozen) came to be."""
    if c.model.teacher != "tiny":
        trained = c.model.finetunes_teacher and bool(c.model.teacher_finetune.train_encoder)
        return "pretrained, trained further by the fine-tune" if trained else "pretrained"
    trained = c.model.finetunes_teacher and c.model.teacher_finetune.train_encoder is not False
    return "random, trained by the teacher's fine-tune" if trained else "random (never trained)"


def _pct(x: float) -> str:
    return f"{100 * x:g}%"


#: The PL-Distill paper's section 3.1 (``../shared/papers/pl-distill-awcka.txt``), one row per setting.
#: What the paper leaves unsaid (learning rates, seeds, how the best model is selected) is not here: the
#: protocol block shows those, and nothing can differ from an unstated value.
PAPER_SETTINGS: tuple[PaperSetting, ...] = (
    PaperSetting("corpus", "IEMOCAP, RAVDESS, SAVEE (EmoBox partitions)",
                 lambda c: c.data.dataset if c.data.source == "emobox" else "synthetic",
                 lambda v: v in _PAPER_CORPORA),
    PaperSetting("validation carve-out", "none described (EmoBox ships no validation split)",
                 lambda c: c.data.val_fraction, lambda v: v == 0, lambda v: f"{_pct(v)} of each fold's training clips"),
    PaperSetting("labelled fraction", "1 (every training clip labelled)", lambda c: c.data.labelled_fraction,
                 lambda v: v == 1, lambda v: f"{v:g}"),
    PaperSetting("teacher", "Qwen2-Audio-7B-Instruct", lambda c: _checkpoint_name(c.model.teacher),
                 lambda v: str(v).lower().startswith("qwen2-audio-7b")),
    PaperSetting("teacher fine-tuned", "no (used as is)", lambda c: c.model.finetunes_teacher, lambda v: v is False,
                 lambda v: "yes" if v else "no"),
    PaperSetting("teacher's audio encoder", "pretrained (Whisper's, inside Qwen2-Audio)", _teacher_encoder,
                 lambda v: v == "pretrained"),
    PaperSetting("student LLM", "Qwen2-0.5B with LoRA",
                 lambda c: _checkpoint_name(c.model.student_llm) if _is_audiolm(c) else None,
                 lambda v: str(v).lower().startswith("qwen2-0.5b")),
    PaperSetting("epochs", "5", lambda c: c.train.epochs, lambda v: v == 5),
    PaperSetting("batch x accumulation", "1 x 16", lambda c: (c.train.batch_size, c.train.grad_accum),
                 lambda v: tuple(v) == (1, 16), lambda v: f"{v[0]} x {v[1]}"),
    PaperSetting("LoRA rank, alpha", "8, 256",
                 lambda c: (c.hparams.lora_rank, c.hparams.lora_alpha) if _is_audiolm(c) else None,
                 lambda v: tuple(v) == (8, 256), lambda v: f"{v[0]}, {v[1]:g}"),
    PaperSetting("PL-Distill's alpha, beta, gamma, t", "1, 0.8, 1, 2",
                 lambda c: ((c.hparams.alpha, c.hparams.beta, c.hparams.gamma, c.hparams.temperature)
                            if c.hparams.objective == "pl_distill" else None),
                 lambda v: tuple(v) == (1.0, 0.8, 1.0, 2.0), lambda v: ", ".join(f"{x:g}" for x in v)),
)


def _corpus(c: TrialConfig) -> str:
    d = c.data
    folds = ", ".join(str(f) for f in d.folds)
    if d.source == "synthetic":
        s = d.synth
        return (f"synthetic ({s.speakers} speakers x {len(s.labels)} emotions x {s.per_class} clips, {s.folds} "
                f"speaker-independent folds), folds {folds}")
    return f"EmoBox {d.dataset} ({d.manifests}), folds {folds}"


def _pool(c: TrialConfig) -> str | None:
    """The clips in no fold that a teacher fine-tuned here also trains on, or None."""
    d = c.data
    if d.source == "emobox":
        return "the corpus's teacher_pool.jsonl where the manifests have one"
    s = d.synth
    if not s.teacher_speakers:
        return None
    return f"a pool of {s.teacher_speakers} further speakers ({s.teacher_speakers * s.per_class * len(s.labels):,} clips)"


def _labelled_clips(c: TrialConfig) -> str:
    d = c.data
    return ("the fold's training clips" if d.labelled_fraction >= 1
            else f"the fold's labelled training clips ({_pct(d.labelled_fraction)})")


def _audio_teacher(c: TrialConfig) -> str:
    m = c.model
    name = "tiny (built from a config)" if m.teacher == "tiny" else f"checkpoint {_checkpoint_name(m.teacher)}"
    if not m.finetunes_teacher:
        return f"{name}, used as is (saw no clip of the corpus); audio encoder {_teacher_encoder(c)}"
    ft, pool = m.teacher_finetune, _pool(c)
    saw = _labelled_clips(c) + (f" and {pool}" if pool else "")
    return (f"{name}, fine-tuned {ft.epochs} epochs (lr {ft.lr:g}, batch {ft.batch_size}) on {saw}; "
            f"audio encoder {_teacher_encoder(c)}")


def _emodistill_teachers(c: TrialConfig) -> str:
    t = c.model.emodistill_teachers
    pool = _pool(c) if c.model.emodistill_pool else None  # unset: as the audio-LM teacher's fine-tune
    saw = _labelled_clips(c) + (f" and {pool}" if pool else "")
    return (f"prosodic ({t.prosodic_arch} on eGeMAPSv02) and linguistic ({_checkpoint_name(t.linguistic)} BERT on "
            f"transcripts), trained on {saw}")


def _labels(c: TrialConfig) -> str:
    d = c.data
    if d.labelled_fraction >= 1:
        return "every training clip labelled"
    return (f"{_pct(d.labelled_fraction)} of each fold's training clips labelled, per emotion (seed "
            f"{d.labelled_seed}); the rest read the teacher's signal, with the teacher's answer standing in for "
            "the label; sft trains on the labelled clips alone")


def _ce(c: TrialConfig) -> str:
    """Every CE option the config has (``ce_*``): a new one appears here without an edit."""
    fields = {k: v for k, v in c.hparams.model_dump(mode="json").items() if k.startswith("ce_")}
    return ", ".join(f"{k} {v}" for k, v in sorted(fields.items()))


def _training(c: TrialConfig) -> str:
    t, h = c.train, c.hparams
    lr = f"lr {h.lr:g}" + (f", projector lr {h.projector_lr:g}" if h.projector_lr and _is_audiolm(c) else "")
    return (f"{t.epochs} epochs, batch {t.batch_size} x accumulation {t.grad_accum}, {lr}, "
            f"best epoch by {t.select_metric}")


_EMODISTILL_TEACHERS = "EmoDistill's teachers (EmoDistill rows)"
_TEACHERS = ("audio-LM teacher", _EMODISTILL_TEACHERS)
#: The block's items, in order (:func:`describe`'s keys).
_ITEMS = ("corpus and folds", "validation", "labels", "CE", "audio-LM teacher", _EMODISTILL_TEACHERS, "training",
          "seeds")


def describe(c: TrialConfig) -> dict[str, str]:
    """One trial's protocol, item by item, in words (the block's lines); items that do not apply to the
    trial (the EmoDistill teachers of an audio-LLM trial) are absent."""
    d = c.data
    out = {
        "corpus and folds": _corpus(c),
        "validation": f"{_pct(d.val_fraction)} of each fold's training clips, whole speakers (seed {d.val_seed})",
        "labels": _labels(c),
        "CE": _ce(c),
        "audio-LM teacher": _audio_teacher(c),
    }
    if c.student_family == "classifier":
        out[_EMODISTILL_TEACHERS] = _emodistill_teachers(c)
    out["training"] = _training(c)
    out["seeds"] = _seeds(c)
    return out


def _seeds(c: TrialConfig) -> str:
    t = c.train
    listed = ", ".join(str(s) for s in t.seeds)
    if t.replicates is None:
        return listed
    r, every = t.replicates, t.seed_sequence()
    # the list alone read as "three seeds" where a row ran up to max_seeds: the rule is the protocol
    return (f"{listed}, then one more at a time (up to {r.max_seeds}: seeds {every[0]} to {every[-1]}) until the "
            f"stratified 95% interval of {t.select_metric} is within ±{r.half_width:g} (precision only: never "
            "a test figure); each row's count and why it stopped are its own")


@dataclass
class SweepProtocol:
    """The protocol of a set of trials: ``configs`` by trial id; items with one value across them, and
    those that vary (which then belong to each row)."""

    configs: dict[str, TrialConfig] = field(default_factory=dict)

    def items(self) -> dict[str, list[str]]:
        """Item -> its distinct values over the trials (in first-seen order)."""
        out: dict[str, list[str]] = {k: [] for k in _ITEMS}
        for c in self.configs.values():
            for k, v in describe(c).items():
                if v not in out[k]:
                    out[k].append(v)
        return {k: vs for k, vs in out.items() if vs}

    def varying(self) -> list[str]:
        return [k for k, vs in self.items().items() if len(vs) > 1]

    def of_trial(self, trial_id: str) -> dict[str, str]:
        """The items that vary across the trials, as ``trial_id`` has them (a row's own protocol)."""
        c = self.configs.get(trial_id)
        if c is None:
            return {}
        own = describe(c)
        return {k: own[k] for k in self.varying() if k in own}


def sweep_protocol(rows: Iterable[Mapping[str, Any]]) -> SweepProtocol:
    """The protocol of the trials in ``rows`` (trials-table dicts) that recorded a resolved config; a
    config that no longer validates (an older version's) is left out."""
    configs: dict[str, TrialConfig] = {}
    for r in rows:
        text = r.get("config_json")
        if not text:
            continue
        try:
            configs[str(r.get("trial_id"))] = TrialConfig.model_validate(json.loads(text))
        except ValueError:
            continue
    return SweepProtocol(configs)


#: Values an item lists before it says how many more there are: a random search varies the learning rate
#: in every trial, and 120 values in one line hide the protocol they are part of.
LISTED_VALUES = 4


def _values(vs: Sequence[str]) -> str:
    if len(vs) <= LISTED_VALUES:
        return " | ".join(vs)
    return " | ".join(vs[:LISTED_VALUES]) + f" | ... ({len(vs)} distinct values in all)"


def paper_differences(configs: Sequence[TrialConfig]) -> list[str]:
    """Where ``configs`` differ from :data:`PAPER_SETTINGS`: one line per setting, the paper's value and
    every value of these trials that is not the paper's."""
    out = []
    for s in PAPER_SETTINGS:
        values = [v for v in (s.read(c) for c in configs) if v is not None]
        off = list(dict.fromkeys(s.show(v) for v in values if not s.same(v)))
        if off:
            out.append(f"{s.name}: paper {s.paper}; here {_values(off)}")
    return out


def protocol_lines(protocol: SweepProtocol, *, per_row_note: bool = True) -> list[str]:
    """The block as Markdown bullet lines (also read as plain text on a console): the protocol, then the
    differences from the paper; an item that varies across the trials lists its values and, with
    ``per_row_note``, says that the rows name their own."""
    if not protocol.configs:
        return ["Protocol: not recorded (no trial holds a resolved config)."]
    lines = ["Protocol (from the trials' resolved configs):"]
    for k, vs in protocol.items().items():
        if len(vs) == 1:
            lines.append(f"- {k}: {vs[0]}")
        else:
            lines.append(f"- {k}: differs between trials" + (" (each row says its own)" if per_row_note else "")
                         + ": " + _values(vs))
    diffs = paper_differences(list(protocol.configs.values()))
    lines.append("Differences from the PL-Distill paper's setup (section 3.1):")
    lines += [f"- {d}" for d in diffs] or ["- none"]
    return lines


def caption_lines(protocol: SweepProtocol, rows: Mapping[str, Mapping[str, Any]], *,
                  teachers: bool = False) -> list[str]:
    """A table's caption: the protocol it was run under (the block at the top, by reference, with the
    settings that differ from the paper named), with ``teachers`` what each teacher saw, and each row's
    own protocol where rows differ in it. ``rows``: row label -> dataset -> cell (with a ``trial_id``)."""
    if not protocol.configs:
        return ["Protocol: not recorded."]
    off = [s.name for s in PAPER_SETTINGS
           if any(v is not None and not s.same(v) for v in (s.read(c) for c in protocol.configs.values()))]
    lines = ["Protocol: as at the top of this report" + (f"; differs from the paper's section 3.1 in {', '.join(off)}"
                                                       if off else "; the paper's section 3.1 settings") + "."]
    if teachers:
        seen = {k: vs[0] for k, vs in protocol.items().items() if k in _TEACHERS and len(vs) == 1}
        lines += [f"What each teacher saw: {k}: {v}." for k, v in seen.items()]
    if not protocol.varying():
        return lines
    lines.append("Rows differ in protocol; each row's own:")
    for label, cells in rows.items():
        own = list(dict.fromkeys(tuple(protocol.of_trial(str(c.trial_id)).items()) for c in cells.values()))
        for items in own:
            if items:
                lines.append(f"- {label}: " + "; ".join(f"{k}: {v}" for k, v in items))
    return lines
