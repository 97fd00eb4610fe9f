"""The served model's card: what it is, what it learnt from, how well it does, its limits.

Written as ``README.md`` in the served folder (Hugging Face's model-card layout: YAML
metadata, then Markdown), from the run's own records, so it cannot drift from the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from visrec.core.data import IngestionReport
from visrec.core.models import WeightSetConfig

# The figures of the card's evaluation table: (score key, label); calibrated pairs show
# the value before and after temperature scaling.
_SCORES = (("top1", "top-1 accuracy"), ("balanced_accuracy", "balanced accuracy"),
           ("macro_f1", "macro F1"), ("many_shot_accuracy", "many-shot accuracy"),
           ("medium_shot_accuracy", "medium-shot accuracy"),
           ("few_shot_accuracy", "few-shot accuracy"))
_CALIBRATION = (("ece", "expected calibration error"), ("nll", "negative log-likelihood"),
                ("brier", "Brier score"))
_LISTED_CLASSES = 30  # more classes are counted, not listed


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(f"`{name}`" for name in names[:_LISTED_CLASSES])
    more = len(names) - _LISTED_CLASSES
    return shown + (f" and {more} more" if more > 0 else "")


def _data_section(report: IngestionReport, balance: Mapping[str, Any]) -> list[str]:
    totals = {split: sum(counts.values()) for split, counts in report.counts.items()}
    carved = f" ({', '.join(report.carved_splits)} carved from train)" \
        if report.carved_splits else ""
    lines = ["## Data", "",
             f"- Source: `{report.root}`"
             + (f" with labels from `{report.labels_file}`" if report.labels_file else ""),
             f"- Classes ({len(report.classes)}): {_names(report.classes)}",
             "- Images: " + ", ".join(f"{split} {count:,}" for split, count in totals.items())
             + carved,
             f"- Left out by ingestion: {report.quarantine.total:,} files"
             + (" (" + ", ".join(f"{reason} {count}" for reason, count
                                 in report.quarantine.by_reason.items() if count) + ")"
                if report.quarantine.total else "")]
    if balance:
        head, tail = balance.get("head", {}), balance.get("tail", {})
        groups = balance.get("groups", {})
        lines.append(f"- Train imbalance ratio {_number(balance.get('imbalance_ratio'), 1)} "
                     f"(largest class `{head.get('label')}`: {head.get('train')} images, "
                     f"smallest `{tail.get('label')}`: {tail.get('train')})")
        if groups.get("few"):
            lines.append(f"- Few-shot classes (under {balance['thresholds']['few']} training "
                         f"images): {_names(groups['few'])}")
    return [*lines, ""]


def _training_section(config: WeightSetConfig) -> list[str]:
    training = config.training
    schedule = training.get("schedule", {})
    mixup = training.get("mixup", {})
    return ["## Training", "",
            f"- `{config.architecture}` from "
            + ("the weights at " + f"`{training['pretrained_path']}`"
               if training.get("pretrained_path") else
               "timm's pretrained weights" if training.get("pretrained") else "scratch")
            + f", {training.get('epochs')} epochs, batch {training.get('batch_size')}, "
            f"{training.get('optimizer')} at lr {_number(training.get('lr'), 4)}, "
            f"{schedule.get('name')} decay, label smoothing "
            f"{_number(training.get('label_smoothing'), 3)}, MixUp alpha "
            f"{_number(mixup.get('mixup_alpha'), 2)}, CutMix alpha "
            f"{_number(mixup.get('cutmix_alpha'), 2)}",
            f"- Augmentation: `{config.augmentation.policy}`",
            f"- Class balance: `{config.class_balance.strategy}` "
            f"({config.class_balance.reason})",
            f"- Seed {config.seed}; code `{config.git_commit or 'unknown'}`", ""]


def _evaluation_section(config: WeightSetConfig, table: Sequence[Mapping[str, Any]]
                        ) -> list[str]:
    scores = config.scores or {}
    images = scores.get("num_test_images")
    lines = ["## Evaluation", "",
             f"On the test split ({'?' if images is None else int(images)} images), the "
             f"served weights (`{config.served_from}`, chosen on the validation split):", "",
             "| figure | value |", "| --- | --- |"]
    lines += [f"| {label} | {_number(scores[key])} |" for key, label in _SCORES
              if scores.get(key) is not None]
    lines += [f"| {label}, before → after temperature scaling | {_number(scores.get(key))} "
              f"→ {_number(scores.get(f'{key}_calibrated'))} |" for key, label in _CALIBRATION
              if scores.get(key) is not None]
    lines += ["", f"Probabilities are calibrated: `softmax(logits / T)` with T = "
              f"{_number(config.temperature, 4)}, fitted on the validation split.", ""]
    if len(table) > 1:
        lines += ["Every weight set of the run (test figures):", "",
                  "| weights | top-1 | balanced accuracy | ECE after scaling | served |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {row['weights']} | {_number(row.get('top1'))} | "
                  f"{_number(row.get('balanced_accuracy'))} | "
                  f"{_number(row.get('ece_calibrated'))} | "
                  f"{'yes' if row.get('served') else ''} |" for row in table]
        lines.append("")
    return lines


def _use_section(config: WeightSetConfig) -> list[str]:
    return ["## How to use", "",
            "The folder is a timm model folder (`config.json`, `model.safetensors`):", "",
            "```python",
            "import timm, torch",
            "from PIL import Image",
            "",
            'model = timm.create_model("local-dir:path/to/this/folder", pretrained=True).eval()',
            "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))",
            'image = transform(Image.open("image.png").convert("RGB"))[None]',
            f"probabilities = torch.softmax(model(image) / {_number(config.temperature, 4)}, "
            "dim=1)",
            'labels = model.pretrained_cfg["label_names"]',
            "```", "",
            "In the visrec project that trained it: `visrec predict FOLDER --out "
            "predictions.csv`, or `visrec serve` for a web page to try it.", ""]


def _limits_section(config: WeightSetConfig, balance: Mapping[str, Any]) -> list[str]:
    scores = config.scores or {}
    few = balance.get("groups", {}).get("few", [])
    lines = ["## Intended use and limits", "",
             f"- Intended for images like the training images, sorted into these "
             f"{len(config.classes)} classes. It has no \"none of these\" answer: every "
             "image gets one of the classes, so screen out-of-scope images before it.",
             f"- Images are resized to {config.image_size} px (shorter side, then a centre "
             "crop); details smaller than that are lost.",
             "- The figures above come from a test split of the same source as the training "
             "images; on images from another camera, site or time, measure again before "
             "relying on them."]
    if few:
        lines.append(f"- {len(few)} classes had few training images ({_names(few)}); "
                     f"few-shot test accuracy {_number(scores.get('few_shot_accuracy'))} "
                     f"against {_number(scores.get('many_shot_accuracy'))} for the "
                     "many-shot classes.")
    images, top1 = scores.get("num_test_images"), scores.get("top1")
    if images and top1 is not None:
        error = 2 * (float(top1) * (1 - float(top1)) / images) ** 0.5
        lines.append(f"- With {int(images)} test images, the top-1 accuracy of "
                     f"{_number(top1)} is known to about ± {error:.3f} (two binomial "
                     "standard errors).")
    return [*lines, ""]


def model_card(config: WeightSetConfig, report: IngestionReport,
               balance: Mapping[str, Any], table: Sequence[Mapping[str, Any]]) -> str:
    """The served model's card (Markdown with Hugging Face's YAML metadata).

    Args:
        config: The served weight set's config (with its temperature and scores).
        report: Ingestion's report: where the images came from, classes, split sizes.
        balance: The class-balance report (imbalance ratio, head, tail, shot groups).
        table: One row per weight set (``weights``, ``served``, test figures).
    """
    title = (f"# {config.architecture} classifier of {len(config.classes)} classes, "
             "trained with visrec")
    metadata = ["---", "library_name: timm", "pipeline_tag: image-classification",
                "tags: [image-classification, timm, visrec]", "---", ""]
    intro = [title, "",
             f"A `{config.architecture}` image classifier of {report.num_images:,} images "
             f"({config.image_size} px, {config.in_chans} channels), written by visrec's "
             "`train` pipeline from the run's own records.", ""]
    return "\n".join([*metadata, *intro, *_data_section(report, balance),
                      *_training_section(config), *_evaluation_section(config, table),
                      *_use_section(config), *_limits_section(config, balance)])
