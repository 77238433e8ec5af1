"""Probes: zero-shot as a linear layer, the linear probe, few-shot fits batched over seeds."""

import numpy as np
import pytest
import torch

from mvclip_utils.evaluation.metrics import zero_shot_predictions
from mvclip_utils.studies import probes


def clustered(n_per_class=30, classes=4, dim=16, noise=0.8, seed=0):
    """Features around one centre per class, the centres doubling as (noisy) class-prompt embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    features = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    prompts = centres + 0.5 * rng.normal(size=centres.shape)
    return features.astype(np.float32), labels, prompts.astype(np.float32)


def test_the_zero_shot_initialised_classifier_before_any_step_is_zero_shot_exactly():
    features, labels, prompts = clustered()
    normalised = features / np.linalg.norm(features, axis=1, keepdims=True)
    prompts_n = prompts / np.linalg.norm(prompts, axis=1, keepdims=True)
    zero_shot = (zero_shot_predictions(normalised[:, None], prompts_n)[:, 0] == labels).mean()
    assert 0.3 < zero_shot < 1.0  # informative but not trivial
    assert float(probes.zero_shot_classifier(prompts, 100.0).accuracy(features, labels)) == zero_shot
    shots = probes.sample_shots(labels, 2, [0, 1, 2])
    fit = probes.fit_few_shot(torch.from_numpy(features[shots]), torch.from_numpy(labels[shots]), "zero_shot",
                              torch.from_numpy(prompts), 100.0, epochs=0, lr=0.1, monitor=(features, labels))
    assert fit.curve.shape == (3, 1) and torch.all(fit.curve[:, 0] == zero_shot)
    assert torch.all(fit.classifier.accuracy(features, labels) == zero_shot)


def test_few_shot_fits_batched_over_seeds_equal_one_fit_per_seed():
    features, labels, prompts = clustered()
    shots = probes.sample_shots(labels, 4, [0, 1, 2])
    x, y, text = torch.from_numpy(features[shots]), torch.from_numpy(labels[shots]), torch.from_numpy(prompts)
    batched = probes.fit_few_shot(x, y, "zero_shot", text, 50.0, epochs=20, lr=0.05, monitor=(features, labels))
    for s in range(3):
        single = probes.fit_few_shot(x[s:s + 1], y[s:s + 1], "zero_shot", text, 50.0, epochs=20, lr=0.05,
                                     monitor=(features, labels))
        torch.testing.assert_close(single.classifier.weight[0], batched.classifier.weight[s], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(single.curve[0], batched.curve[s])
    random = probes.fit_few_shot(x, y, "random", text, 50.0, epochs=200, lr=0.05)
    assert torch.all(random.classifier.accuracy(x, y) == 1.0)  # each seed fits its own shots
    with pytest.raises(ValueError, match="init 'prompt': expected one of"):
        probes.fit_few_shot(x, y, "prompt", text, 50.0, epochs=1, lr=0.1)


def test_shots_are_per_class_distinct_and_seeded():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 7)
    shots = probes.sample_shots(labels, 3, [0, 1, 7])
    assert shots.shape == (3, 9)
    for row in shots:
        assert list(labels[row]) == [0] * 3 + [1] * 3 + [2] * 3 and len(set(row)) == 9
    assert np.array_equal(shots, probes.sample_shots(labels, 3, [0, 1, 7]))
    assert not np.array_equal(shots[0], shots[2])
    with pytest.raises(ValueError, match=r"4 shots per class asked, but class\(es\) \[1\] have only 3"):
        probes.sample_shots(labels, 4, [0])


def test_the_linear_probe_picks_c_on_val_and_scores_as_sklearn_does():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_x, train_y, _ = clustered(seed=1)
    val_x, val_y, _ = clustered(n_per_class=10, seed=1)
    test_x, test_y, _ = clustered(n_per_class=20, seed=1)
    probe = probes.linear_probe(train_x, train_y, val_x, val_y, [0.01, 1.0, 100.0])
    assert set(probe.val_accuracy) == {0.01, 1.0, 100.0}
    assert probe.val_accuracy[probe.C] == max(probe.val_accuracy.values())
    def norm(x):
        x = np.asarray(x, dtype=np.float64)  # as the probe fits
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    scaler = StandardScaler().fit(norm(train_x))
    for C in probe.val_accuracy:  # each C's validation score is sklearn's own (warm starts change no optimum)
        own = LogisticRegression(C=C, max_iter=1000).fit(scaler.transform(norm(train_x)), train_y)
        assert probe.val_accuracy[C] == pytest.approx(own.score(scaler.transform(norm(val_x)), val_y), abs=0.04)
    # The refit on train + val, warm-started from the chosen C's solution, reaches the from-scratch optimum.
    reference = make_pipeline(StandardScaler().fit(norm(train_x)), LogisticRegression(C=probe.C, max_iter=1000))
    reference[-1].fit(scaler.transform(norm(np.concatenate([train_x, val_x]))), np.concatenate([train_y, val_y]))
    tolerance = 1e-2 * np.abs(reference[-1].coef_).max()  # L-BFGS's own stopping tolerance, not a bias
    assert np.allclose(probe.model.coef_, reference[-1].coef_, atol=tolerance)
    assert probe.accuracy(test_x, test_y) == pytest.approx(reference[-1].score(scaler.transform(norm(test_x)), test_y),
                                                           abs=1e-12)


def test_cifar100_files_round_trip_in_their_on_disk_format(tmp_path):
    import pickle

    from mvclip_utils.data.cifar import CifarSplit, held_out, load_cifar100, write_cifar100

    rng = np.random.default_rng(0)
    train = CifarSplit(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), np.array([0, 1, 2, 0, 1, 2]),
                       ["apple", "aquarium_fish", "baby"])
    base = write_cifar100(tmp_path, train, train)
    raw = pickle.load(open(base / "train", "rb"), encoding="latin1")  # CIFAR's layout: rows of R, G, B planes
    assert raw["data"].shape == (6, 3072) and raw["data"][1, 1024] == train.images[1, 0, 0, 1]
    back = load_cifar100(tmp_path, train=True, download=False)
    assert np.array_equal(back.images, train.images) and np.array_equal(back.labels, train.labels)
    assert back.class_names == train.class_names
    with pytest.raises(FileNotFoundError, match="download is false"):
        load_cifar100(tmp_path / "elsewhere", train=False, download=False)
    mask = held_out(np.repeat(np.arange(3), 10), 0.2, seed=0)
    assert mask.reshape(3, 10).sum(1).tolist() == [2, 2, 2]
    assert np.array_equal(mask, held_out(np.repeat(np.arange(3), 10), 0.2, seed=0))


@pytest.mark.slow
def test_cifar100_config_runs_notebook_09_alone_on_a_local_dataset_and_a_random_vit_b_32(tmp_path):
    """The real CIFAR-100 path end to end, all but the download: the dataset in CIFAR-100's pickle format,
    a checkpoint of a randomly initialised ViT-B-32, the config's notebook selection."""
    import json

    import open_clip
    import pandas as pd
    import yaml
    from helpers import run_module

    from mvclip_utils.core.runs import PARAMS_DIR
    from mvclip_utils.data.cifar import CifarSplit, write_cifar100

    rng = np.random.default_rng(0)
    colours = np.array([[220, 30, 30], [30, 200, 40], [40, 40, 210]], dtype=np.int64)

    def split(per_class):
        labels = np.repeat(np.arange(3), per_class)
        images = np.clip(colours[labels][:, None, None] + rng.integers(-40, 40, (len(labels), 32, 32, 3)), 0, 255)
        return CifarSplit(images.astype(np.uint8), labels, ["apple", "aquarium_fish", "baby"])

    write_cifar100(tmp_path / "cifar", split(12), split(4))
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), tmp_path / "vit_b_32_random.pt")
    cfg = yaml.safe_load((PARAMS_DIR / "cifar100_vitb32.yaml").read_text())
    cfg["backbone"]["pretrained"] = str(tmp_path / "vit_b_32_random.pt")
    cfg["dataset"]["cifar100"].update(root=str(tmp_path / "cifar"), download=False, val_fraction=0.25)
    cfg["embed"]["batch_size"] = 16
    cfg["probes"] = {"shots": [1, 4], "seeds": 2, "epochs": 5, "linear_probe_Cs": [0.1, 10.0]}
    (tmp_path / "cifar.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    result = run_module("mvclip_utils", "run", "--config", str(tmp_path / "cifar.yaml"), "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (run_dir / "reports").iterdir()) == ["09_zero_shot_probes.html"]  # 09 alone
    report = (run_dir / "reports" / "09_zero_shot_probes.html").read_text()
    assert "ViT-B-32 / vit_b_32_random.pt" in report and "0.6168" in report  # the seed's number beside ours
    probed = json.loads((run_dir / "metrics" / "probes.json").read_text())["cifar100"]
    assert set(probed["zero_shot"]) == {"test images"} and 0 <= probed["probe_linear"] <= 1
    fits = pd.read_csv(run_dir / "metrics" / "probes.csv")
    assert len(fits) == 2 * 2 * 2  # k x init x seed, one evaluation set
