import torch

from engine.config import ScheduleConfig
from engine.data import load
from engine.judge import accuracy, load_judge, random_affine, train_judge
from engine.metrics import (class_scores, forward_recognisability, frechet_distance, mean_pairwise_distance,
                            memorisation)
from engine.schedule import NoiseSchedule


def test_frechet_of_a_set_with_itself_is_zero_and_grows_with_noise():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 8, generator=g)
    assert abs(frechet_distance(a, a)) < 1e-6
    d1 = frechet_distance(a, a + 0.3 * torch.randn(400, 8, generator=g))
    d2 = frechet_distance(a, a + 1.0 * torch.randn(400, 8, generator=g))
    assert 0 < d1 < d2


def test_class_scores_and_diversity():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    r = class_scores(probs, torch.tensor([0, 1, 1]))
    assert r["accuracy"] == round(2 / 3, 4) and r["confusion"] == [[1, 0], [1, 1]]
    assert abs(r["confidence"] - (0.9 + 0.8 + 0.4) / 3) < 1e-4
    assert mean_pairwise_distance(torch.zeros(5, 3)) == 0
    assert mean_pairwise_distance(torch.tensor([[0.0], [2.0]])) == 2.0


def test_memorisation_flags_an_exact_copy():
    train, held = load("mnist-5k")
    samples = torch.cat([train.images[:1], held.images[:9]])    # one copy of a training digit, nine unseen
    m = memorisation(samples, train.images, held.images)
    assert m["nearest_train_l2"][0] < 1e-3 and m["nearest_train_index"][0] == 0
    assert m["fraction_closer_than_threshold"] >= 0.1
    from engine.metrics import nearest_neighbours

    pre = memorisation(samples, train.images, None, heldout_nearest=nearest_neighbours(held.images, train.images)[0])
    assert pre == m                                              # the dashboard's precomputed reference agrees


def test_augmentation_keeps_background_and_shape():
    train, _ = load("mnist-5k")
    x = random_affine(train.images[:8], torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 28, 28)
    assert float(x[:, :, 0, 0].max()) < -0.9                       # corners stay background


def test_short_judge_training_beats_95_percent():
    judge, report = train_judge(epochs=2, seed=1)
    assert report["heldout_accuracy"] > 0.95


def test_forward_recognisability_falls_with_noise():
    judge = load_judge()
    _, held = load("mnist-5k")
    idx = torch.arange(0, 1000, 5)
    curve = forward_recognisability(judge, NoiseSchedule(ScheduleConfig()), held.images[idx], held.labels[idx],
                                    [0.0, 0.5, 0.8, 1.0])
    o = curve["overall"]
    assert o[0] > 0.95 and o[-1] < 0.3 and o[0] >= o[1] >= o[2] >= o[3] - 0.05
    assert set(curve["accuracy"]) == set(range(10))


def test_shipped_judge_reaches_its_stated_accuracy():
    from engine.checkpoints import read_configs
    from engine.judge import JUDGE_PATH

    _, meta = read_configs(JUDGE_PATH)
    _, held = load("mnist-5k")
    acc = accuracy(load_judge(), held.images, held.labels)
    assert abs(acc - meta["metrics"]["heldout_accuracy"]) < 0.002 and acc >= 0.985


def test_quality_report_on_real_digits_sits_at_the_baseline():
    from engine.metrics import quality_report

    train, held = load("mnist-5k")
    idx = torch.arange(1, 4000, 8)                 # 500 real training digits posing as "samples"
    r = quality_report(load_judge(), train.images[idx], train.labels[idx], train.images, train.labels,
                       held.images, held.labels)
    assert r["accuracy"] > 0.97 and 0.5 < r["frechet_ratio_to_baseline"] < 2.0 and r["frechet_n"] == 500
    assert r["memorisation"]["fraction_closer_than_threshold"] == 1.0     # they *are* training digits
    noisy = quality_report(load_judge(), (train.images[idx] + 0.5 * torch.randn(500, 1, 28, 28)).clamp(-1, 1),
                           train.labels[idx], train.images, train.labels, held.images, held.labels)
    assert noisy["frechet_ratio_to_baseline"] > 2 * r["frechet_ratio_to_baseline"]


def test_sampling_figures_time_and_judge_each_config_in_order(tmp_path, tiny_model):
    from engine.checkpoints import load_checkpoint, save_checkpoint
    from engine.config import SampleConfig
    from engine.judge import predict
    from engine.metrics import sampling_figures
    from engine.sampling import class_labels, sample

    from .conftest import TINY_MODEL, TINY_SCHEDULE
    path = save_checkpoint(tmp_path / "m", model=tiny_model, ema_model=None, model_config=TINY_MODEL,
                           schedule_config=TINY_SCHEDULE, train_config=None)
    ck = load_checkpoint(path)
    judge = load_judge()
    cfgs = [SampleConfig(sampler="ddim", steps=3, guidance=1.0), SampleConfig(sampler="ddpm", steps=5, guidance=0.0)]
    rows = sampling_figures(ck, judge, cfgs, per_class=2)
    assert [(r["sampler"], r["steps"], r["n"]) for r in rows] == [("ddim", 3, 20), ("ddpm", 5, 20)]
    assert all(r["seconds"] > 0 for r in rows)
    labels = class_labels(2)
    for cfg, row in zip(cfgs, rows):       # the accuracy of exactly the digits the config draws
        probs, _ = predict(judge, sample(ck.model, NoiseSchedule(TINY_SCHEDULE), labels, cfg))
        assert row["judge_accuracy"] == round(float((probs.argmax(1) == labels).float().mean()), 4)
    assert "judge_accuracy" not in sampling_figures(ck, None, cfgs[:1], per_class=1)[0]


def test_loss_by_noise_level_buckets_and_the_eps_prediction_direction():
    """A 'denoiser' that answers eps_hat = x_t is nearly right at high noise (x_t ~ eps) and wrong at low
    noise (x_t ~ x0): its error must fall from the first bucket to the last, on one scale for all buckets."""
    from engine.config import ScheduleConfig
    from engine.data import load
    from engine.metrics import loss_by_noise_level
    from engine.schedule import NoiseSchedule

    class EchoModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, t, y, style=None):
            return x

    _, held = load("mnist-5k")
    calls = []
    out = loss_by_noise_level(EchoModel(), NoiseSchedule(ScheduleConfig()), held.images[:50], held.labels[:50],
                              progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 10) for k in range(1, 11)]                      # one tick per bucket, for the progress bar
    assert out["n_images"] == 50 and out["buckets"][0] == [0.0, 0.1] and out["buckets"][-1][1] == 1.0
    assert len(out["mse"]) == 10 and out["mse"][0] > 0.3 and out["mse"][-1] < 0.01
    assert all(a >= b for a, b in zip(out["mse"], out["mse"][1:]))


def test_reverse_recognisability_ends_where_sampling_ends(tiny_model):
    """The curve's last point on x_t is the judge's accuracy on the very samples `sample` returns (same seeds),
    the fractions run to 1, and the share called 'not a digit' is reported at every step."""
    from engine.config import SampleConfig, ScheduleConfig
    from engine.judge import load_judge, predict
    from engine.metrics import reverse_recognisability
    from engine.sampling import class_labels, sample
    from engine.schedule import NoiseSchedule

    judge, schedule = load_judge(), NoiseSchedule(ScheduleConfig(T=50))
    cfg = SampleConfig(steps=5, guidance=1.0)
    ticks = []
    curve = reverse_recognisability(tiny_model, schedule, judge, cfg, per_class=2,
                                    progress=lambda done, total: ticks.append((done, total)))
    assert ticks == [(k, 5) for k in range(1, 6)]
    assert curve["done"] == [0.2, 0.4, 0.6, 0.8, 1.0]
    labels = class_labels(2)
    x = sample(tiny_model, schedule, labels, cfg, seeds=list(range(20)))
    final = float((predict(judge, x)[0].argmax(1) == labels).float().mean())
    assert curve["x_t"]["overall"][-1] == round(final, 4)
    assert len(curve["x_t"]["not_a_digit"]) == 5 and all(0 <= v <= 1 for v in curve["x_t"]["not_a_digit"])
