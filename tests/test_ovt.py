"""Omniview-Tuning's model: LoRA + VIFormer on any open_clip ViT, adapters saved and loaded exactly."""

import copy
import logging
from dataclasses import replace

import open_clip
import pandas as pd
import pytest
import torch

from mvclip_utils.models.adapters import (
    AdapterConfig,
    OmniviewCLIP,
    VIFormer,
    load_adapters,
    save_adapters,
    trainable_parameters,
    tuned_backbone,
)
from mvclip_utils.models.backbone import Backbone, InputTransform, create_tiny_model


def tiny():
    torch.manual_seed(0)
    model, _ = create_tiny_model()
    return model.eval()


def test_lora_on_a_random_vit_b_32_has_the_expected_parameter_count():
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that no weights were loaded: intended
    base = open_clip.create_model("ViT-B-32")
    lora_only = OmniviewCLIP(copy.deepcopy(base), AdapterConfig(viformer_layers=0))
    assert trainable_parameters(lora_only)[0] == 442_368  # rank 8 on 12 attention blocks of width 768
    full = OmniviewCLIP(base)
    viformer = sum(p.numel() for p in full.viformer.parameters())
    trainable, total = trainable_parameters(full)
    assert trainable == 442_368 + viformer and total > 150_000_000
    assert all(not p.requires_grad for p in full.base.transformer.parameters())  # the text tower stays frozen


def test_a_fresh_ovt_model_gives_the_backbones_embeddings():
    base = tiny()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = base.encode_image(x)
        torch.testing.assert_close(OmniviewCLIP(copy.deepcopy(base)).encode_image(x), expected)


def test_adapters_round_trip_exactly_and_make_a_backbone(tmp_path):
    base = tiny()
    model = OmniviewCLIP(copy.deepcopy(base))
    with torch.no_grad():  # as if trained: every adapter weight away from its initial value
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        tuned = model.eval().encode_image(x)
        assert not torch.allclose(tuned, base.encode_image(x), atol=1e-3)
    path = tmp_path / "adapters.pt"
    save_adapters(model, path)
    assert path.stat().st_size < 0.3 * 4 * trainable_parameters(model)[1]  # the adapters, not the backbone
    again = load_adapters(copy.deepcopy(base), path)
    with torch.no_grad():
        assert torch.equal(again.encode_image(x), tuned)
        tokens = torch.ones(2, 20, dtype=torch.long)
        torch.testing.assert_close(again.encode_text(tokens), base.encode_text(tokens))  # the text tower untouched
    backbone = Backbone(copy.deepcopy(base), None, None, torch.device("cpu"), False, "tiny", "tiny", "tiny|abc")
    tuned_bb = tuned_backbone(backbone, path)
    assert tuned_bb.slug == "tiny+omniview_tuning" and tuned_bb.identity.startswith("tiny|abc|omniview_tuning:")
    assert not any("lora_" in n for n, _ in backbone.model.named_parameters())  # the base backbone is untouched
    images = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    torch.testing.assert_close(tuned_bb.encode_images(InputTransform.for_model(base)(images)),
                               torch.nn.functional.normalize(again.encode_image(InputTransform.for_model(base)(images)),
                                                             dim=-1))
    # A file of another config is refused, naming what is missing.
    save_adapters(OmniviewCLIP(copy.deepcopy(base), AdapterConfig(lora_rank=0)), tmp_path / "viformer_only.pt")
    broken = torch.load(tmp_path / "viformer_only.pt", weights_only=True)
    broken["config"]["lora_rank"] = 8
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="lacks adapter weights"):
        load_adapters(copy.deepcopy(base), tmp_path / "broken.pt")


def test_viformer_keeps_the_residual_ratio_and_checks_heads():
    v = VIFormer(16, layers=1, heads=4, alpha=0.1)
    z = torch.randn(5, 16)
    torch.testing.assert_close(v(z), z)  # f starts as the identity
    with torch.no_grad():
        v.out.weight.normal_()
    f = z + v.out(v.encoder(z[:, None])[:, 0])
    torch.testing.assert_close(v(z), 0.1 * f + 0.9 * z)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        VIFormer(16, heads=3)


def test_the_write_up_residual_is_alpha_of_a_new_representation_from_the_start():
    torch.manual_seed(0)
    v = VIFormer(16, layers=1, heads=4, alpha=0.1, residual="writeup")
    z = torch.randn(5, 16)
    f = v.out(v.encoder(z[:, None])[:, 0])  # a full map of z, with no skip inside it
    torch.testing.assert_close(v(z), 0.1 * f + 0.9 * z)
    assert (v(z) - z).norm() > 0.01 * z.norm()  # unlike `step`, not the identity at init
    v.alpha = 1.0
    torch.testing.assert_close(v(z), f)  # alpha = 1: the new representation alone
    step = VIFormer(16, layers=1, heads=4, alpha=1.0)
    torch.testing.assert_close(step(z), z)  # `step` at alpha = 1 is still z: alpha only scales a learnt step
    with pytest.raises(ValueError, match="residual 'skip' is not one of step, writeup"):
        VIFormer(16, residual="skip")


def test_one_ovt_step_lowers_the_loss_on_a_fixed_batch():
    from mvclip_utils.models import losses

    model = OmniviewCLIP(tiny()).train()
    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 64, 64, generator=g)
    text = torch.nn.functional.normalize(torch.randn(8, 128, generator=g), dim=-1)
    owner = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    anchor = torch.nn.functional.normalize(torch.randn(4, 128, generator=g), dim=-1)[owner]

    def loss() -> torch.Tensor:
        z = model.encode_image(images)
        return (losses.clip_loss(z, text, torch.tensor(100.0), owner[:, None] == owner[None])
                + losses.view_consistency_loss(z, anchor))

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = loss()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        assert float(loss()) < float(before)
    assert all(p.grad is None for p in model.base.transformer.parameters())  # nothing flows into the text tower


@pytest.mark.slow
def test_train_ovt_runs_the_minimax_loop_on_renders(tmp_path):
    from helpers import make_config

    from mvclip_utils.core.runs import RunLayout
    from mvclip_utils.core.train import SettingReducedWarning
    from mvclip_utils.data.dataset import build_dataset
    from mvclip_utils.models.backbone import CaptionTokenizer
    from mvclip_utils.studies.ovt import train_ovt
    from mvclip_utils.studies.tuning import describe_batch

    cfg = make_config({"dataset": {"procedural": {"objects_per_category": 4},
                                   "splits": {"pretrain": 0.25, "train": 0.25, "val": 0.25, "test": 0.25}},
                       "ovt": {"steps": 6, "objects_per_batch": 2, "views_per_object": 2, "clean_per_batch": 2,
                               "outlier_views": 2, "viformer_layers": 1}})
    layout = RunLayout(tmp_path)
    build_dataset(cfg, layout, progress=False)
    model = tiny()
    tokenizer = CaptionTokenizer.from_texts(["a red mug"], model.vocab_size, model.context_length)
    backbone = Backbone(model, None, tokenizer, torch.device("cpu"), False, "tiny", "tiny", "tiny|x")
    tuned, history = train_ovt(cfg, layout, backbone, progress=False)
    # 3 train objects x 8 grid views, batches of 2 objects x 2 views: 4 rounds x 1 batch = 4 steps an epoch.
    assert len(history.itc) == len(history.vc) == 6 and history.epochs == 2
    assert len(history.outlier_drift) == 1 and 0 <= history.outlier_drift[0] <= 1
    assert any(v > 0 for v in history.vc)
    changed = [not torch.equal(p, torch.zeros_like(p)) for n, p in tuned.named_parameters() if "lora_B" in n]
    assert changed and all(changed)  # LoRA's B starts at zero: every adapter was trained
    assert history.batch == {"objects_per_batch": 2, "views_per_object": 2, "clean_per_batch": 2, "text": "category"}

    # A batch larger than the data is reduced with a warning per setting, and the history says what was used.
    objects = pd.read_parquet(layout.objects_table)
    n_train, n_pretrain = (objects.split == "train").sum(), (objects.split == "pretrain").sum()
    big = replace(cfg, ovt=replace(cfg.ovt, steps=1, objects_per_batch=100, views_per_object=20, clean_per_batch=1000))
    with pytest.warns(SettingReducedWarning) as caught:
        _, history = train_ovt(big, layout, backbone, progress=False)
    messages = "\n".join(str(w.message) for w in caught)
    assert f"ovt.objects_per_batch: 100 asked, but the data has {n_train} train objects" in messages
    assert "ovt.views_per_object: 20 asked, but the data has 8 seen grid views per object" in messages
    assert f"ovt.clean_per_batch: 1000 asked, but the data has {n_pretrain} clean objects" in messages
    assert history.batch == {"objects_per_batch": n_train, "views_per_object": 8, "clean_per_batch": n_pretrain,
                             "text": "category"}
    assert describe_batch(history.batch) == (f"{n_train} objects x 8 views + {n_pretrain} clean views, "
                                             "ITC texts: category")

    # The caption regimes: per-view captions train through ITC; no text leaves the image-only loss.
    for regime in ("per_view", "none"):
        _, history = train_ovt(replace(cfg, ovt=replace(cfg.ovt, steps=2, text=regime)), layout, backbone,
                               progress=False)
        assert history.batch["text"] == regime and len(history.itc) == 2
        assert (max(history.itc) > 0) == (regime == "per_view")


def test_caption_bank_draws_captions_or_category_prompts_and_ids_mark_identical_texts():
    from mvclip_utils.studies.tuning import CaptionBank

    caption = torch.arange(4 * 2 * 3, dtype=torch.float).reshape(4, 2, 3)  # 4 objects, 2 templates
    category = -torch.arange(2 * 2 * 3, dtype=torch.float).reshape(2, 2, 3) - 1  # 2 categories
    objects = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    bank = CaptionBank(caption, category, torch.tensor([0, 0, 1, 1]), category_prob=1.0)
    text, ids = bank.sample(objects, torch.Generator().manual_seed(0))
    assert (text < 0).all()  # every text is a category prompt
    for i in range(len(objects)):
        j = next(j for j in range(2) if torch.equal(text[i], category[bank.object_category[objects[i]], j]))
        assert ids[i] == 4 * 2 + bank.object_category[objects[i]] * 2 + j
    same_text = (text[:, None] == text[None]).all(-1)
    assert torch.equal(same_text, ids[:, None] == ids[None])  # equal ids exactly when the texts are identical
    assert same_text.sum() > len(objects)  # objects 0 and 1 (mugs) do share prompts

    bank.category_prob = 0.0
    text, ids = bank.sample(objects, torch.Generator().manual_seed(1))
    assert (text >= 0).all() and torch.equal((text[:, None] == text[None]).all(-1), ids[:, None] == ids[None])
    assert all(any(torch.equal(text[i], caption[objects[i], j]) for j in range(2)) for i in range(len(objects)))


def test_masked_category_negatives_give_every_prompt_of_a_category_one_id():
    from mvclip_utils.models import losses
    from mvclip_utils.studies.tuning import CaptionBank

    caption = torch.zeros(4, 3, 2)
    category = torch.randn(2, 3, 2)  # 2 categories x 3 templates
    objects = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # objects 0, 1 are mugs; 2, 3 bottles
    bank = CaptionBank(caption, category, torch.tensor([0, 0, 1, 1]), category_prob=1.0,
                       mask_category_negatives=True)
    text, ids = bank.sample(objects, torch.Generator().manual_seed(0))
    same_category = bank.object_category[objects][:, None] == bank.object_category[objects][None]
    assert torch.equal(ids[:, None] == ids[None], same_category)  # any template: one category, one id
    templates_differ = ~(text[:, None] == text[None]).all(-1) & same_category
    assert templates_differ.any()  # two mugs in different templates: negatives unless masked
    # By hand: ITC with the mask equals the loss with those logits removed.
    image, scale = torch.randn(8, 2), torch.tensor(10.0)
    masked = losses.clip_loss(image, text, scale, ids[:, None] == ids[None])
    torch.testing.assert_close(masked, losses.clip_loss(image, text, scale, same_category))
    unmasked = CaptionBank(caption, category, torch.tensor([0, 0, 1, 1]), category_prob=1.0)
    _, plain_ids = unmasked.sample(objects, torch.Generator().manual_seed(0))
    assert not torch.equal(plain_ids[:, None] == plain_ids[None], same_category)  # today: templates apart


def test_per_view_captions_pair_each_view_with_its_own_caption():
    from mvclip_utils.studies.tuning import CaptionBank

    per_view = torch.arange(3 * 4 * 2, dtype=torch.float).reshape(3, 4, 2)  # 3 objects x 4 views
    category = -torch.arange(2 * 2 * 2, dtype=torch.float).reshape(2, 2, 2) - 1  # 2 categories x 2 templates
    bank = CaptionBank(per_view, category, torch.tensor([0, 1, 1]), category_prob=0.0, per_view=True)
    objects, views = torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 3, 3, 1, 1])
    text, ids = bank.sample(objects, torch.Generator().manual_seed(0), views)
    assert torch.equal(text, per_view[objects, views])  # the caption of that very view
    assert torch.equal(ids, objects * 4 + views)
    same_text = (text[:, None] == text[None]).all(-1)
    assert torch.equal(same_text, ids[:, None] == ids[None])  # the last two are one view drawn twice
    bank.category_prob = 1.0
    text, ids = bank.sample(objects, torch.Generator().manual_seed(0), views)
    assert (text < 0).all() and (ids >= 3 * 4).all()  # bare prompts: ids apart from every view caption's


def test_view_captions_of_a_run_follow_each_object_and_view():
    import pandas as pd

    from mvclip_utils.core.cameras import views_table
    from mvclip_utils.core.schema import RenderConfig
    from mvclip_utils.data.dataset import view_captions
    from mvclip_utils.data.objects import make_object, view_caption

    views = views_table(RenderConfig(azimuths=4, elevations_deg=[40]))
    objects = pd.DataFrame({"object_id": ["mug_0002", "uid123"], "category": ["mug", "donut"],
                            "caption": ["a mug", "Glazed donut"], "source": ["procedural", "objaverse"]})
    captions = view_captions(objects, views, seed=5)
    spec = make_object("mug", 2, 5)
    assert captions[0] == [view_caption(spec, v.azimuth_deg, v.elevation_deg) for v in views.itertuples()]
    assert captions[1][0] == "Glazed donut, seen from the front" and len(set(captions[1])) > 1


def test_the_outcome_and_ablation_findings_follow_the_numbers():
    import pandas as pd

    from mvclip_utils.studies.ovt import describe_ablations, describe_outcome

    columns = ["clean (canonical view)", "2D-OOD", "viewpoint-OOD (other grid views)", "same-object", "cross-object",
               "view mAP"]
    table = pd.DataFrame([[0.95, 0.75, 0.31, 0.86, 0.74, 0.17], [0.95, 0.75, 0.56, 0.93, 0.82, 0.19],
                          [0.94, 0.70, 0.56, 0.95, 0.87, 0.20]], index=["frozen", "itc_finetune", "omniview_tuning"],
                         columns=columns)
    text = describe_outcome(table)
    assert "+25.0 points over the frozen backbone (target +20: met" in text
    assert "Clean: -1.0 points (target within 2: met); 2D-OOD: -5.0 points (target within 3: **missed**" in text
    assert "+0.0 points on viewpoint-OOD (unpaired means: the verdict, paired" in text  # no verdict from means
    assert "same-object similarity +2.0 points, cross-object +5.0" in text and "views pulled together" in text
    table.loc["omniview_tuning", "viewpoint-OOD (other grid views)"] = 0.56 + 1e-16
    assert "better" not in describe_outcome(table)  # a difference of 1e-16 is no win

    ablations = pd.DataFrame({"changes": ["(the run's ovt)", "lora_rank=0", "margin_mode=hinge"],
                              "clean": [0.94, 0.90, 0.94], "viewpoint-OOD": [0.56, 0.40, 0.56],
                              "val clean": [0.80, 0.75, float("nan")], "val transfer": [0.30, 0.25, float("nan")]},
                             index=["omniview_tuning", "viformer_only", "hinge"])
    assert describe_ablations(ablations).splitlines() == [
        "- **viformer_only** (lora_rank=0): val transfer -5.0 points, val clean -5.0; on test, viewpoint-OOD -16.0, "
        "clean -4.0 points against the full OVT.",
        "- **hinge** (margin_mode=hinge): no val cells (rerun the variant); on test, viewpoint-OOD +0.0, clean +0.0 "
        "points against the full OVT."]


def test_the_ablation_table_sets_val_cells_and_their_transfer_mean_beside_test():
    from types import SimpleNamespace

    import pandas as pd

    from mvclip_utils.studies.ovt import ABLATION_COLUMNS, VAL_COLUMNS, ablation_table

    row = {c: 0.5 for c in ABLATION_COLUMNS} | {"changes": "(the run's ovt)", "variant": "omniview_tuning"}
    val = dict(zip(VAL_COLUMNS, [0.7, 0.3, 0.2, 0.1]))  # clean, unseen poses, single-view, unseen categories
    old = {**row, "variant": "stored_before_val", "changes": "vc_weight=2.0"}  # a row without val cells
    table = ablation_table(SimpleNamespace(ablations=pd.DataFrame([row | val, old])))
    assert table.loc["omniview_tuning", "val transfer"] == pytest.approx(0.2)  # (0.3 + 0.2 + 0.1) / 3
    assert table.loc["omniview_tuning", "val clean"] == 0.7 and pd.isna(table.loc["stored_before_val", "val transfer"])
    assert list(table.columns[:len(ABLATION_COLUMNS)]) == list(ABLATION_COLUMNS.values())
