"""The phrase vocabulary: held-out paraphrases stay out of training; positives and negatives by domain."""

from __future__ import annotations

from radvlsm.stage1_localize import phrases as ph


def test_held_out_paraphrases_never_appear_in_training() -> None:
    train = {p.lower() for p in ph.train_vocabulary()}
    held = ph.held_out_vocabulary()
    assert held and not train & {p.lower() for p in held}
    assert "mole" in held and "growth in the colon lining" in held and "colonic adenoma" in held
    # no training phrase even contains the held-out word "mole"
    assert not any("mole" in p for p in train)


def test_every_domain_has_train_and_held_out_phrases() -> None:
    for d in ph.DOMAINS:
        assert ph.DOMAIN_TRAIN[d] and ph.DOMAIN_HELD_OUT[d]
    assert "breast mass" in ph.DOMAIN_TRAIN[ph.BREAST_ULTRASOUND]
    assert "lung nodule" in ph.DOMAIN_TRAIN[ph.CHEST_CT]
    assert ph.DEFAULT_PROMPT == "lesion" and ph.DEFAULT_PROMPT in ph.GENERIC_TRAIN


def test_positive_and_negative_pools() -> None:
    skin = ph.phrase_pools(ph.DERMOSCOPY)
    colon = ph.phrase_pools(ph.COLONOSCOPY)
    assert "lesion" in skin.positive and "lesion" in colon.positive  # generic: positive everywhere
    assert "melanoma" in skin.positive and "melanoma" in colon.negative
    assert "polyp" in colon.positive and "polyp" in skin.negative
    assert "lung nodule" in skin.negative and "breast mass" in colon.negative
    assert "lesion with blue-whitish veil" in skin.positive and "lesion with blue-whitish veil" in colon.negative
    for pools in (skin, colon):
        assert not set(pools.positive) & set(pools.negative)
    assert ph.is_positive("mole", ph.DERMOSCOPY) is True
    assert ph.is_positive("mole", ph.COLONOSCOPY) is False
    assert ph.is_positive("abnormal area", ph.COLONOSCOPY) is True
    assert ph.is_positive("no such phrase", ph.COLONOSCOPY) is None


def test_ph2_label_phrases() -> None:
    row = {"diagnosis": "melanoma", "blue_whitish_veil": "P", "streaks": "A", "regression_areas": "P",
           "dots_globules": "AT", "pigment_network": "AT", "asymmetry": "2", "colors": "dark-brown;blue-gray"}
    got = ph.ph2_label_phrases(row)
    assert set(got) == {
        "melanoma", "malignant melanoma", "lesion with blue-whitish veil", "lesion with regression areas",
        "lesion with atypical dots and globules", "lesion with atypical pigment network",
        "asymmetric pigmented lesion", "lesion with dark-brown pigment", "lesion with blue-gray pigment",
    }
    assert "lesion with streaks" not in got
    assert set(got) <= set(ph.train_vocabulary())
    assert ph.label_phrases("kvasir-seg", {"diagnosis": "melanoma"}) == ()
    assert ph.ph2_label_phrases({}) == ()
