"""The summary's findings are computed from the numbers, and judge collapse relative to the geometry."""

import pandas as pd
import pytest

from mvclip_utils.studies import summary


def row(method, cross, same, text_image, zero_shot, mAP=0.2, **extra):
    return {"method": method, "cross_object_mean": cross, "same_object_mean": same, "text_image_mean": text_image,
            "zero_shot_accuracy": zero_shot, "view_retrieval_mAP": mAP, "view_retrieval_recall_at_1": mAP + 0.2,
            "n_categories": 12, "modality_gap": 0.8, "effective_rank": 20.0, **extra}


# The tiny model's geometry (cross-object ~0.1, text-image ~0.39) and a real-CLIP-like one (~0.7, ~0.27).
TINY = row("baseline", 0.110, 0.498, 0.394, 0.45, mAP=0.16)
REAL = row("baseline", 0.710, 0.893, 0.266, 0.60, mAP=0.30)
COLLAPSED = {"tiny": row("object_head", 0.733, 0.946, 0.275, 0.083, mAP=0.17),
             "real": row("object_head", 0.978, 0.997, 0.822, 0.09, mAP=0.10)}
HEALTHY = {"tiny": row("object_head", 0.180, 0.700, 0.380, 0.44, mAP=0.25),
           "real": row("object_head", 0.760, 0.950, 0.270, 0.58, mAP=0.35)}


@pytest.mark.parametrize("geometry,baseline", [("tiny", TINY), ("real", REAL)])
def test_collapse_is_judged_relative_to_the_headroom_on_both_geometries(geometry, baseline):
    collapsed = summary.findings(pd.DataFrame([baseline, COLLAPSED[geometry]]))
    healthy = summary.findings(pd.DataFrame([baseline, HEALTHY[geometry]]))
    assert "**Object head collapses** (seed: yes) — reproduced" in collapsed
    assert "**Object head collapses** (seed: yes) — not reproduced" in healthy
    assert summary.is_collapsed(pd.Series(baseline), pd.Series(COLLAPSED[geometry]))
    assert not summary.is_collapsed(pd.Series(baseline), pd.Series(HEALTHY[geometry]))
    # The numbers in the sentence are the row's, not fixed phrases.
    closed = summary.headroom_closed(baseline["cross_object_mean"], COLLAPSED[geometry]["cross_object_mean"])
    assert f"{closed:.0%} of the headroom to 1 closed" in collapsed
    assert f"{baseline['cross_object_mean']:.3f} → {COLLAPSED[geometry]['cross_object_mean']:.3f}" in collapsed


def test_geometry_sentence_depends_on_the_distance_from_real_clip():
    assert "close to real CLIP's geometry" in summary.findings(pd.DataFrame([REAL]))
    far = summary.findings(pd.DataFrame([TINY]))
    assert "0.59 away from real CLIP's cross-object similarity" in far and "depend on" in far


def test_contrastive_and_autoencoder_findings_follow_the_numbers():
    contrastive_down = row("contrastive_head", 0.02, 0.89, 0.137, 0.30)
    contrastive_up = row("contrastive_head", 0.004, 0.78, 0.494, 0.50)
    down = summary.findings(pd.DataFrame([REAL, contrastive_down]))
    up = summary.findings(pd.DataFrame([TINY, contrastive_up]))
    assert "**Text-image similarity falls** (seed: yes) — reproduced: 0.266 → 0.137." in down
    assert "it falls, as category prompts never enter the loss" in down
    assert "**Text-image similarity falls** (seed: yes) — not reproduced: 0.394 → 0.494" in up
    assert "it does not fall" in up
    codes = {"reconstruction_mse": 0.0006, "reconstruction_l2": 0.26}
    near = row("autoencoder", 0.827, 0.965, 0.323, 0.5, vi_code_same_object_mean=0.9,
               vi_code_cross_object_mean=0.1, **codes)
    far = row("autoencoder", 0.784, 0.955, 0.209, 0.1, vi_code_same_object_mean=0.9,
              vi_code_cross_object_mean=-0.001, **codes)
    assert "stay near the baseline** (seed: yes; here: within 0.15) — reproduced" in summary.findings(
        pd.DataFrame([REAL, near]))
    text = summary.findings(pd.DataFrame([TINY, far]))
    assert "within 0.15) — not reproduced: 0.110 → 0.784" in text and "the codes are kept apart" in text
