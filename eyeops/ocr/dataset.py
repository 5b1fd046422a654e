"""Field crops with labels, cut by the same align/crop code the OCR transformer runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from eyeops.align import align, align_to_template, decode_grey
from eyeops.devices.layout import DeviceLayout, LayoutRegistry
from eyeops.errors import AlignmentFailed, EyeopsError
from eyeops.regions import crop_regions
from eyeops.synth.exams import Variety, render_one
from eyeops.synth.values import ValueMode


@dataclass
class CropSet:
    crops: np.ndarray  # (N, 32, 128) uint8
    texts: list[str]
    grammars: list[str]
    kinds: list[str]
    fields: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:  # exactly `path`: savez would append ".npz" to a bare name
            np.savez_compressed(
                handle,
                crops=self.crops,
                texts=np.array(self.texts),
                grammars=np.array(self.grammars),
                kinds=np.array(self.kinds),
                fields=np.array(self.fields),
            )

    def concat(self, other: CropSet) -> CropSet:
        """Both sets' crops, this one's first."""
        return CropSet(
            np.concatenate([self.crops, other.crops]),
            self.texts + other.texts,
            self.grammars + other.grammars,
            self.kinds + other.kinds,
            self.fields + other.fields,
        )

    @classmethod
    def load(cls, path: Path) -> CropSet:
        data = np.load(path)
        return cls(
            data["crops"],
            [str(t) for t in data["texts"]],
            [str(g) for g in data["grammars"]],
            [str(k) for k in data["kinds"]],
            [str(f) for f in data["fields"]],
        )


_LAYOUTS: list[DeviceLayout] = []
BROAD_MIN_ALIGNMENT = 0.95  # eyeops.align's box agreement, 0..1


def _set_layouts(layouts: list[DeviceLayout]) -> None:
    """Once per worker process: the layouts every job of this build renders."""
    _LAYOUTS[:] = layouts


def _exam_crops(
    args: tuple[int, str, int, float, int | None, Variety, float],
) -> tuple[np.ndarray, list[str], list[str], list[str], list[str]] | None:
    seed, split, index, random_fraction, faces, variety, grammar_fraction = args
    layouts = _LAYOUTS
    layout = layouts[index % len(layouts)]
    rng = np.random.default_rng([seed, index, 99])
    draw = rng.random()
    mode: ValueMode = "random" if draw < random_fraction else "realistic"
    if grammar_fraction > 0 and rng.random() < grammar_fraction:
        mode = "grammar"
    exam = render_one(layout, seed, split, index, mode, faces=faces, variety=variety)
    try:
        if variety in ("broad", "reference"):
            # The broad renderer's screens are harder to find; a crop cut from a poorly fitted
            # alignment would hold a neighbouring field under this field's label, so training keeps
            # only exams whose alignment put (nearly) every value box on its text.
            found = align(decode_grey(exam.image), layout)
            if found.score < BROAD_MIN_ALIGNMENT:
                return None
            aligned = found.aligned
        else:
            aligned = align_to_template(decode_grey(exam.image), layout)
    except AlignmentFailed:
        return None
    specs = list(layout.all_fields())
    crops = crop_regions(aligned, specs, layout.template.value_align)
    return (
        crops,
        [exam.texts[s.name] for s in specs],
        [s.grammar for s in specs],
        [layout.kind] * len(specs),
        [s.name for s in specs],
    )


class TrainingSetError(EyeopsError, ValueError):
    """The kinds or the renderer asked for cannot make a training set."""


def training_layouts(
    registry: LayoutRegistry, kinds: Sequence[str] | None, variety: Variety
) -> LayoutRegistry:
    """The layouts a training set renders: `kinds` (all when empty); variety "reference" needs each
    to carry a reference image (an onboarded kind)."""
    if kinds:
        unknown = sorted(set(kinds) - set(registry.kinds()))
        if unknown:
            raise TrainingSetError(
                f"unknown device kind(s) {', '.join(unknown)}; known: {', '.join(registry.kinds())}"
                " (an onboarded kind's folder goes in EYEOPS_LAYOUT_DIRS)"
            )
        registry = LayoutRegistry({k: registry[k] for k in kinds})
    if variety == "reference":
        missing = [layout.kind for layout in registry if layout.template.reference is None]
        if missing:
            raise TrainingSetError(
                "the reference renderer needs onboarded kinds with a reference image;"
                f" {', '.join(missing)} {'has' if len(missing) == 1 else 'have'} none:"
                " name kinds onboarded by `eyeops devices onboard`"
            )
    return registry


def build_crop_set(
    registry: LayoutRegistry,
    exams: int,
    seed: int,
    split: str,
    random_fraction: float = 0.6,
    workers: int = 2,
    faces: int | None = None,
    variety: Variety = "classic",
    grammar_fraction: float = 0.0,
) -> CropSet:
    """Render `exams` exams, align and crop each; exams that fail to align are left out.
    `faces` limits the fonts to the split's first N; `variety` picks the training renderer;
    `grammar_fraction` of exams show texts drawn uniformly from each field's grammar (no value
    prior), the rest realistic or uniform-in-range values (`random_fraction`) as before."""
    layouts = list(registry)
    jobs = [(seed, split, i, random_fraction, faces, variety, grammar_fraction) for i in range(exams)]
    if workers > 1:
        with get_context("spawn").Pool(workers, initializer=_set_layouts, initargs=(layouts,)) as pool:
            results = pool.map(_exam_crops, jobs, chunksize=16)
    else:
        _set_layouts(layouts)
        results = [_exam_crops(j) for j in jobs]
    crops, texts, grammars, kinds, fields = [], [], [], [], []
    for r in results:
        if r is None:
            continue
        crops.append(r[0])
        texts += r[1]
        grammars += r[2]
        kinds += r[3]
        fields += r[4]
    return CropSet(np.concatenate(crops), texts, grammars, kinds, fields)
