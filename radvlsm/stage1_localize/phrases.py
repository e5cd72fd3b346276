"""The localizer's phrase vocabulary, and which phrase is positive for which image.

Domains: ``dermoscopy`` (PH2), ``colonoscopy`` (Kvasir-SEG), ``breast_ultrasound`` (BUSI, BUS-BRA: the
ultrasound localizer) and ``chest_ct`` (no 2-D training images: its phrases serve as negatives).

Each domain has TRAIN phrases (used to train the localizer) and HELD-OUT paraphrases (never used in training:
they measure how the frozen sentence encoder carries the model to unseen wordings). :data:`GENERIC_TRAIN` /
:data:`GENERIC_HELD_OUT` are domain-free ("lesion", "abnormality" …) and positive for every image.

Positives and negatives (the rule :func:`phrase_pools` applies):

- positive for an image (target = its lesion mask, ITM label 1): the generic phrases, the phrases of the
  image's own domain, and the label-driven phrases of its dataset (PH2: diagnoses and dermoscopic criteria).
- negative for an image (target = an empty relevance map, ITM label 0): the phrases of every other domain,
  including the label-driven phrases of other domains' datasets.

The localizer does NOT learn diagnosis or dermoscopic criteria: "melanoma" asked of a common nevus, or
"lesion with blue-whitish veil" asked of a lesion without a veil, still localizes that skin lesion (the
phrase names the kind of lesion to look for, and the lesion is there). Judging the diagnosis and the criteria is
stage 3's work. The image's own label phrases are only drawn more often (see :func:`label_phrases`), so that
the phrases a user would truthfully type about an image are seen with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DERMOSCOPY = "dermoscopy"
COLONOSCOPY = "colonoscopy"
BREAST_ULTRASOUND = "breast_ultrasound"
CHEST_CT = "chest_ct"
DOMAINS = (DERMOSCOPY, COLONOSCOPY, BREAST_ULTRASOUND, CHEST_CT)

#: Which domain each shared dataset's images belong to (``CachedSet.source`` values).
DATASET_DOMAIN: Mapping[str, str] = {
    "ph2": DERMOSCOPY,
    "kvasir-seg": COLONOSCOPY,
    "busi": BREAST_ULTRASOUND,
    "bus-bra": BREAST_ULTRASOUND,
    "lidc-nodules": CHEST_CT,
}

#: The prompt used when the user gives none.
DEFAULT_PROMPT = "lesion"

GENERIC_TRAIN: tuple[str, ...] = (
    "lesion",
    "the lesion",
    "abnormality",
    "abnormal region",
    "lesion of interest",
    "region of interest",
)
GENERIC_HELD_OUT: tuple[str, ...] = ("abnormal area", "suspicious area", "the finding")

DOMAIN_TRAIN: Mapping[str, tuple[str, ...]] = {
    DERMOSCOPY: (
        "skin lesion",
        "pigmented skin lesion",
        "pigmented lesion",
        "melanocytic lesion",
        "nevus",
        "melanocytic nevus",
        "common nevus",
        "benign nevus",
        "atypical nevus",
        "dysplastic nevus",
        "melanoma",
        "malignant melanoma",
        "skin spot",
        "lesion on the skin",
        "dermoscopic lesion",
    ),
    COLONOSCOPY: (
        "polyp",
        "colorectal polyp",
        "colon polyp",
        "colonic polyp",
        "polyp in the colon",
        "adenomatous polyp",
        "sessile polyp",
        "pedunculated polyp",
        "intestinal polyp",
        "bowel polyp",
        "gastrointestinal polyp",
        "colonic lesion",
        "lesion in the colon",
    ),
    BREAST_ULTRASOUND: (
        "breast mass",
        "breast lesion",
        "breast tumor",
        "breast nodule",
        "hypoechoic lesion",
        "hypoechoic mass",
        "irregular mass",
        "breast cyst",
    ),
    CHEST_CT: (
        "lung nodule",
        "lung mass",
        "lung lesion",
        "pulmonary mass",
        "solitary pulmonary nodule",
        "nodule in the lung",
    ),
}

DOMAIN_HELD_OUT: Mapping[str, tuple[str, ...]] = {
    DERMOSCOPY: (
        "mole",
        "dark spot on the skin",
        "suspicious mole",
        "brown patch on the skin",
        "cutaneous lesion",
        "skin cancer",
        "melanocytic naevus",
    ),
    COLONOSCOPY: (
        "growth in the colon lining",
        "colonic adenoma",
        "polypoid lesion",
        "bump on the bowel wall",
        "rectal polyp",
        "precancerous colon growth",
    ),
    BREAST_ULTRASOUND: ("breast lump", "mass in the breast tissue", "breast carcinoma", "solid breast nodule"),
    CHEST_CT: ("spot on the lung", "pulmonary nodule", "lung tumour", "round opacity in the lung"),
}

# PH2 label-driven phrases (labels.csv columns → phrases); all are dermoscopy TRAIN phrases.
PH2_DIAGNOSIS_PHRASES: Mapping[str, tuple[str, ...]] = {
    "common_nevus": ("common nevus", "benign nevus"),
    "atypical_nevus": ("atypical nevus", "dysplastic nevus"),
    "melanoma": ("melanoma", "malignant melanoma"),
}
PH2_CRITERION_PHRASES: Mapping[tuple[str, str], str] = {
    ("blue_whitish_veil", "P"): "lesion with blue-whitish veil",
    ("streaks", "P"): "lesion with streaks",
    ("regression_areas", "P"): "lesion with regression areas",
    ("dots_globules", "T"): "lesion with dots and globules",
    ("dots_globules", "AT"): "lesion with atypical dots and globules",
    ("pigment_network", "T"): "lesion with typical pigment network",
    ("pigment_network", "AT"): "lesion with atypical pigment network",
    ("asymmetry", "0"): "symmetric pigmented lesion",
    ("asymmetry", "1"): "pigmented lesion asymmetric in one axis",
    ("asymmetry", "2"): "asymmetric pigmented lesion",
}
PH2_COLOURS = ("white", "red", "light-brown", "dark-brown", "blue-gray", "black")


def ph2_colour_phrase(colour: str) -> str:
    """``"lesion with dark-brown pigment"`` …"""
    return f"lesion with {colour} pigment"


def ph2_label_phrases(labels: Mapping[str, str]) -> tuple[str, ...]:
    """The phrases that truthfully describe one PH2 case (its ``labels.csv`` row): diagnosis names, criteria
    present, colours present. Unknown or empty values give nothing."""
    out: list[str] = list(PH2_DIAGNOSIS_PHRASES.get(labels.get("diagnosis", ""), ()))
    for (column, value), phrase in PH2_CRITERION_PHRASES.items():
        if labels.get(column, "").strip() == value:
            out.append(phrase)
    for colour in (labels.get("colors") or "").split(";"):
        colour = colour.strip()
        if colour in PH2_COLOURS:
            out.append(ph2_colour_phrase(colour))
    return tuple(dict.fromkeys(out))


def _all_ph2_label_phrases() -> tuple[str, ...]:
    out = [p for ps in PH2_DIAGNOSIS_PHRASES.values() for p in ps]
    out += list(PH2_CRITERION_PHRASES.values())
    out += [ph2_colour_phrase(c) for c in PH2_COLOURS]
    return tuple(dict.fromkeys(out))


# Breast-ultrasound label-driven phrases (BUSI / BUS-BRA ``diagnosis``); all are breast-ultrasound TRAIN phrases.
US_DIAGNOSIS_PHRASES: Mapping[str, tuple[str, ...]] = {
    "benign": ("benign breast mass", "benign breast lesion"),
    "malignant": ("malignant breast mass", "malignant breast tumor"),
}
ULTRASOUND_DATASETS = ("busi", "bus-bra")


#: Label-driven phrases per domain (positive for that domain's images, negative for the others').
DOMAIN_LABEL_PHRASES: Mapping[str, tuple[str, ...]] = {
    DERMOSCOPY: _all_ph2_label_phrases(),
    COLONOSCOPY: (),
    BREAST_ULTRASOUND: tuple(p for ps in US_DIAGNOSIS_PHRASES.values() for p in ps),
    CHEST_CT: (),
}


def label_phrases(source: str, labels: Mapping[str, str] | None) -> tuple[str, ...]:
    """The label-driven phrases of one image from dataset ``source`` (empty for datasets without any)."""
    if source == "ph2" and labels:
        return ph2_label_phrases(labels)
    if source in ULTRASOUND_DATASETS and labels:
        return US_DIAGNOSIS_PHRASES.get(labels.get("diagnosis", ""), ())
    return ()


def domain_of(source: str) -> str:
    """The domain of a dataset name; raises ``KeyError`` naming the known datasets."""
    try:
        return DATASET_DOMAIN[source]
    except KeyError:
        raise KeyError(f"no domain known for dataset {source!r}; known: {sorted(DATASET_DOMAIN)}") from None


def domain_train_phrases(domain: str) -> tuple[str, ...]:
    """TRAIN phrases specific to ``domain`` (domain phrases and label-driven phrases), without generic ones."""
    return tuple(dict.fromkeys(DOMAIN_TRAIN[domain] + DOMAIN_LABEL_PHRASES[domain]))


def train_vocabulary() -> tuple[str, ...]:
    """Every phrase used in training, each once, in a fixed order."""
    out = list(GENERIC_TRAIN)
    for d in DOMAINS:
        out += domain_train_phrases(d)
    return tuple(dict.fromkeys(out))


def held_out_vocabulary() -> tuple[str, ...]:
    """Every held-out paraphrase (never used in training)."""
    out = list(GENERIC_HELD_OUT)
    for d in DOMAINS:
        out += DOMAIN_HELD_OUT[d]
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class PhrasePools:
    """The TRAIN phrases that are positive and negative for images of one domain."""

    domain: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]


def phrase_pools(domain: str) -> PhrasePools:
    """Positive: generic + own-domain (+ own label-driven) TRAIN phrases; negative: every other domain's."""
    if domain not in DOMAINS:
        raise KeyError(f"unknown domain {domain!r}; known: {DOMAINS}")
    positive = tuple(dict.fromkeys(GENERIC_TRAIN + domain_train_phrases(domain)))
    negative = tuple(
        dict.fromkeys(p for d in DOMAINS if d != domain for p in domain_train_phrases(d) if p not in positive)
    )
    return PhrasePools(domain, positive, negative)


def is_positive(phrase: str, domain: str) -> bool | None:
    """Whether ``phrase`` (train or held-out) is positive for ``domain``'s images; ``None`` if not in the
    vocabulary."""
    if phrase in GENERIC_TRAIN or phrase in GENERIC_HELD_OUT:
        return True
    for d in DOMAINS:
        if phrase in domain_train_phrases(d) or phrase in DOMAIN_HELD_OUT[d]:
            return d == domain
    return None


def prompt_sets(domain: str, trained: int = 4) -> dict[str, tuple[str, ...]]:
    """The prompts asked of an image of ``domain``: ``trained`` phrases (the default prompt first, then the
    domain's first train phrases), every held-out paraphrase, and every phrase of the other domains."""
    train = (DEFAULT_PROMPT, *DOMAIN_TRAIN[domain][: max(0, trained - 1)])
    para = (*DOMAIN_HELD_OUT[domain], *GENERIC_HELD_OUT)
    neg = tuple(p for d in DOMAINS if d != domain for p in (*DOMAIN_TRAIN[d], *DOMAIN_HELD_OUT[d]))
    return {"trained": train, "paraphrase": para, "negative": neg}
