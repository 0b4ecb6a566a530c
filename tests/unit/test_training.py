"""The training loop on tiny real problems: accuracy, early stopping, optimizers, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paramaudit.config import DataConfig, PipelineConfig
from paramaudit.data import load_and_split
from paramaudit.final_model import FinalModel, final_from_state, train_best
from paramaudit.models import build_model
from paramaudit.overfit import divergence
from paramaudit.training import (
    EpochTrainer,
    History,
    NonFiniteLossError,
    StopRule,
    as_tensors,
    evaluate,
    fit,
    make_optimizer,
    save_best_state,
    train_epochs,
)

Arrays = tuple[np.ndarray, np.ndarray]


def blobs(n: int = 200, d: int = 4, sep: float = 3.0, seed: int = 0) -> tuple[Arrays, Arrays]:
    """Two gaussian blobs, well separated; 3/4 train, 1/4 val."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int64)
    x = (rng.normal(size=(n, d)) + y[:, None] * sep).astype(np.float32)
    cut = n * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def noise(n: int = 40, d: int = 4, seed: int = 1) -> tuple[Arrays, Arrays]:
    """Labels unrelated to the features: a big model can only memorise, so val loss rises."""
    rng = np.random.default_rng(seed)
    def draw() -> Arrays:
        return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 2, n).astype(np.int64)
    return draw(), draw()


def mlp(seed: int = 0, **hp: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    hp.setdefault("num_layers", 1)
    hp.setdefault("hidden_size", 16)
    return build_model("mlp", (4,), 2, **hp)


HP = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 32}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- fit


def test_fit_separable_problem_reaches_high_accuracy() -> None:
    train, val = blobs()
    model = mlp()
    before = evaluate(model, *as_tensors(*val))
    h = fit(model, train, val, HP, max_epochs=15)
    assert h.val_accuracy[-1] >= 0.95
    assert h.train_accuracy[-1] >= 0.95
    assert h.val_loss[-1] < before[0]
    assert h.train_loss[-1] < h.train_loss[0]
    assert not model.training  # fit leaves the model in eval mode


def test_history_lengths_equal_epochs() -> None:
    train, val = blobs()
    h = fit(mlp(), train, val, HP, max_epochs=6)
    assert len(h.train_loss) == len(h.val_loss) == len(h.train_accuracy) == len(h.val_accuracy) == 6
    assert not h.stopped_early
    assert 0 <= h.best_epoch < 6
    assert h.best_epoch == int(np.argmin(h.val_loss))
    assert all(0.0 <= a <= 1.0 for a in h.train_accuracy + h.val_accuracy)


def test_history_exports() -> None:
    train, val = blobs()
    h = fit(mlp(), train, val, HP, max_epochs=3)
    d = h.to_dict()
    assert d["val_loss"] == h.val_loss and d["best_epoch"] == h.best_epoch
    c = h.curves()
    assert c.train_loss == h.train_loss and c.val_accuracy == h.val_accuracy
    c.train_loss.append(99.0)
    assert len(h.train_loss) == 3  # the curves are a copy


def test_on_epoch_callback_sees_every_epoch() -> None:
    train, val = blobs()
    seen: list[tuple[int, dict[str, float]]] = []
    h = fit(mlp(), train, val, HP, max_epochs=4, on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [0, 1, 2, 3]
    assert [m["val_loss"] for _, m in seen] == h.val_loss
    # every metric search.metric may name, every epoch
    from paramaudit.metrics import SEARCH_METRICS, TASK_METRICS

    assert set(seen[0][1]) == {"train_loss", "train_accuracy",
                               *(set(SEARCH_METRICS) - set(TASK_METRICS["regression"]))}
    assert all(m["val_log_loss"] == m["val_loss"] for _, m in seen)


def test_early_stopping_stops_and_restores_best_weights() -> None:
    train, val = noise()
    model = mlp(num_layers=2, hidden_size=256)
    hp = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8}
    h = fit(model, train, val, hp, max_epochs=100, patience=3)
    assert h.stopped_early
    assert len(h.val_loss) < 100
    assert len(h.val_loss) == h.best_epoch + 1 + 3  # exactly `patience` bad epochs after the best
    assert h.best_epoch == int(np.argmin(h.val_loss))
    assert min(h.val_loss[h.best_epoch + 1:]) >= h.val_loss[h.best_epoch]
    val_loss_now, val_acc_now = evaluate(model, *as_tensors(*val))
    assert val_loss_now == pytest.approx(h.val_loss[h.best_epoch], abs=1e-5)
    assert val_acc_now == pytest.approx(h.val_accuracy[h.best_epoch], abs=1e-9)
    assert val_loss_now != pytest.approx(h.val_loss[-1], abs=1e-5)  # not the last weights


def test_restore_best_false_keeps_last_weights() -> None:
    train, val = noise()
    model = mlp(num_layers=2, hidden_size=256)
    hp = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8}
    h = fit(model, train, val, hp, max_epochs=100, patience=3, restore_best=False)
    assert h.stopped_early
    val_loss_now, _ = evaluate(model, *as_tensors(*val))
    assert val_loss_now == pytest.approx(h.val_loss[-1], abs=1e-5)


def test_divergence_ends_training_at_the_epoch_the_rule_fires() -> None:
    train, val = noise()
    hp = {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8}
    h = fit(mlp(num_layers=2, hidden_size=256), train, val, hp, max_epochs=100, patience=50,
            divergence=(0.1, 3))
    assert h.stopped_early and h.stopped_by == "divergence"
    assert h.stop_reason == divergence(h.train_loss, h.val_loss, 0.1, 3)
    # not one epoch earlier: the stop comes as soon as the rule holds
    assert divergence(h.train_loss[:-1], h.val_loss[:-1], 0.1, 3) is None


def test_stop_rule_order_divergence_then_patience_then_budget() -> None:
    trainer = EpochTrainer.__new__(EpochTrainer)  # only history and bad_epochs are read
    trainer.history = History(train_loss=[1.0, 0.5, 0.4, 0.3, 0.2], val_loss=[1.0, 0.5, 0.8, 0.9, 1.0],
                              train_accuracy=[0.5] * 5, val_accuracy=[0.5] * 5, best_epoch=1)
    trainer.bad_epochs = 3
    kind, why = StopRule(5, patience=3, divergence=(0.1, 3)).check(trainer)
    assert kind == "divergence" and why.startswith("divergence:")
    kind, why = StopRule(5, patience=3).check(trainer)
    assert kind == "early_stopping" and "3 epochs after epoch 2" in why
    assert StopRule(5).check(trainer)[0] == "max_epochs"
    assert StopRule(6, patience=4).check(trainer) is None


def test_a_trials_saved_best_weights_are_the_retrained_final_model(tmp_path) -> None:
    """The search's trials run train_epochs with the final model's StopRule and save their best
    weights at their last epoch: loading those gives what train_best retrains, epoch for epoch."""
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    x = rng.normal(size=(160, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=160) > 0).astype(np.int64)
    splits = SimpleNamespace(x_train=x[:100], y_train=y[:100], x_val=x[100:130], y_val=y[100:130],
                             x_test=x[130:], y_test=y[130:], input_shape=(4,), n_classes=2)
    hp = {"optimizer": "adam", "learning_rate": 0.05, "batch_size": 16, "num_layers": 2,
          "hidden_size": 64}
    torch.manual_seed(0)  # as the trainable does before it builds the model
    model = build_model("mlp", (4,), 2, **hp)
    trainer = EpochTrainer(model, (splits.x_train, splits.y_train), (splits.x_val, splits.y_val),
                           hp, seed=0, restore_best=True)
    for _, _, stop in train_epochs(trainer, StopRule(40, patience=3, divergence=(0.1, 3))):
        if stop is not None:
            save_best_state(trainer, tmp_path)
    reused = final_from_state(splits, "mlp", hp, tmp_path, trainer.history, source="trial 1")
    retrained = train_best(splits, "mlp", hp, max_epochs=40, patience=3, seed=0,
                           divergence=(0.1, 3))
    assert retrained.history.val_loss == trainer.history.val_loss
    assert retrained.history.best_epoch == reused.history.best_epoch
    assert retrained.history.stopped_by == reused.history.stopped_by
    assert reused.test_loss == pytest.approx(retrained.test_loss, abs=1e-6)
    for a, b in zip(reused.model.state_dict().values(), retrained.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert reused.source == "trial 1" and retrained.source == "retrained"


def test_patience_none_runs_every_epoch_on_noise() -> None:
    train, val = noise()
    h = fit(mlp(num_layers=2, hidden_size=64), train, val,
            {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 8}, max_epochs=12)
    assert len(h.val_loss) == 12 and not h.stopped_early


def test_fit_restores_batchnorm_statistics_of_best_epoch() -> None:
    # a CNN has BatchNorm buffers: restoring only parameters would not reproduce the best loss
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 64)).astype(np.float32)
    y = rng.integers(0, 3, 60).astype(np.int64)
    torch.manual_seed(0)
    model = build_model("cnn", (1, 8, 8), 3, channels=8)
    h = fit(model, (x[:40], y[:40]), (x[40:], y[40:]),
            {"optimizer": "adam", "learning_rate": 0.05, "batch_size": 8}, max_epochs=25, patience=2)
    assert h.best_epoch < len(h.val_loss) - 1  # the last epoch was not the best one
    val_loss_now, _ = evaluate(model, *as_tensors(x[40:], y[40:]))
    assert val_loss_now == pytest.approx(h.val_loss[h.best_epoch], abs=1e-5)


# --------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("sgd", torch.optim.SGD),
        ("sgd_momentum", torch.optim.SGD),
        ("adam", torch.optim.Adam),
        ("adamw", torch.optim.AdamW),
        ("rmsprop", torch.optim.RMSprop),
    ],
)
def test_every_optimizer_builds(name: str, cls: type[torch.optim.Optimizer]) -> None:
    model = mlp()
    opt = make_optimizer(model.parameters(), {"optimizer": name, "learning_rate": 0.02,
                                              "weight_decay": 1e-4, "momentum": 0.8})
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.02)
    assert group["weight_decay"] == pytest.approx(1e-4)
    if name == "sgd_momentum":
        assert group["momentum"] == pytest.approx(0.8) and group["nesterov"]
    if name == "sgd":
        assert group["momentum"] == 0


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "adam", "adamw", "rmsprop"])
def test_every_optimizer_trains(name: str) -> None:
    train, val = blobs()
    lr = {"sgd": 0.1, "sgd_momentum": 0.05}.get(name, 0.01)
    h = fit(mlp(), train, val, {"optimizer": name, "learning_rate": lr, "batch_size": 32}, max_epochs=8)
    assert h.val_accuracy[-1] >= 0.9
    assert h.train_loss[-1] < h.train_loss[0]


def test_default_optimizer_is_adam() -> None:
    opt = make_optimizer(mlp().parameters(), {})
    assert type(opt) is torch.optim.Adam
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_unknown_optimizer_raises() -> None:
    with pytest.raises(ValueError) as info:
        make_optimizer(mlp().parameters(), {"optimizer": "lion"})
    assert "lion" in str(info.value)


# --------------------------------------------------------------------------- non-finite loss


def test_huge_learning_rate_raises_non_finite() -> None:
    train, val = blobs()
    with pytest.raises(NonFiniteLossError):
        fit(mlp(num_layers=2), train, val, {"optimizer": "sgd", "learning_rate": 1e30, "batch_size": 16},
            max_epochs=5)


def test_inf_input_raises_non_finite() -> None:
    (x, y), val = blobs()
    x = x.copy()
    x[3, 1] = np.inf
    with pytest.raises(NonFiniteLossError) as info:
        fit(mlp(), (x, y), val, HP, max_epochs=3)
    assert "epoch 1" in str(info.value)


def test_nan_in_validation_raises_non_finite() -> None:
    train, (xv, yv) = blobs()
    xv = xv.copy()
    xv[0, 0] = np.nan
    with pytest.raises(NonFiniteLossError):
        fit(mlp(), train, (xv, yv), HP, max_epochs=2)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_history() -> None:
    train, val = blobs()
    hp = {**HP, "dropout": 0.2}
    a = fit(mlp(seed=5, dropout=0.2), train, val, hp, max_epochs=4, seed=5)
    b = fit(mlp(seed=5, dropout=0.2), train, val, hp, max_epochs=4, seed=5)
    assert a == b


def test_different_seed_different_history() -> None:
    train, val = blobs()
    a = fit(mlp(seed=1), train, val, HP, max_epochs=3, seed=1)
    b = fit(mlp(seed=1), train, val, HP, max_epochs=3, seed=2)
    assert a.train_loss != b.train_loss


# --------------------------------------------------------------------------- train_best


@pytest.fixture(scope="module")
def iris_splits():
    return load_and_split(PipelineConfig(data=DataConfig(dataset="iris")))


def test_train_best_returns_test_metrics(iris_splits) -> None:
    hp = {"optimizer": "adam", "learning_rate": 0.02, "batch_size": 16, "num_layers": 1,
          "hidden_size": 16}
    final = train_best(iris_splits, "mlp", hp, max_epochs=40, patience=8, seed=0)
    assert isinstance(final, FinalModel) and isinstance(final.history, History)
    assert final.hyperparameters == hp and final.hyperparameters is not hp
    assert 0 < len(final.history.val_loss) <= 40
    assert final.test_accuracy >= 0.8
    assert final.test_loss > 0
    # the reported test metrics are the returned model's on the test split
    loss, acc = evaluate(final.model, *as_tensors(iris_splits.x_test, iris_splits.y_test))
    assert loss == pytest.approx(final.test_loss, abs=1e-6)
    assert acc == pytest.approx(final.test_accuracy)
    # and the model holds the best epoch's weights
    val_loss, _ = evaluate(final.model, *as_tensors(iris_splits.x_val, iris_splits.y_val))
    assert val_loss == pytest.approx(final.history.val_loss[final.history.best_epoch], abs=1e-5)


def test_train_best_is_deterministic(iris_splits) -> None:
    hp = {"optimizer": "sgd_momentum", "learning_rate": 0.05, "batch_size": 16, "num_layers": 1,
          "hidden_size": 8, "momentum": 0.9}
    a = train_best(iris_splits, "mlp", hp, max_epochs=5, patience=5, seed=3)
    b = train_best(iris_splits, "mlp", hp, max_epochs=5, patience=5, seed=3)
    assert a.history == b.history
    assert a.test_loss == b.test_loss


def test_train_best_cnn_on_digits() -> None:
    splits = load_and_split(PipelineConfig(data=DataConfig(dataset="digits", max_rows=400)))
    final = train_best(splits, "cnn", {"channels": 8, "learning_rate": 0.01, "batch_size": 32},
                       max_epochs=2, patience=2, seed=0)
    assert len(final.history.val_loss) == 2
    assert 0.0 <= final.test_accuracy <= 1.0


def test_augmentation_keeps_shape_changes_values_and_is_seeded() -> None:
    from paramaudit.training import augment_images

    # smooth images (a gradient plus a little texture), as real digits are: a shift of a pixel
    # or a few degrees of rotation moves each pixel a little, not arbitrarily
    ramp = torch.linspace(-1, 1, 8)
    base = (ramp[None, :] + ramp[:, None]).reshape(1, 64)
    x = base.repeat(16, 1) + 0.05 * torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    a = augment_images(x, (1, 8, 8), torch.Generator().manual_seed(1))
    b = augment_images(x, (1, 8, 8), torch.Generator().manual_seed(1))
    c = augment_images(x, (1, 8, 8), torch.Generator().manual_seed(2))
    assert a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, x)
    # small perturbations: the images stay close to what they were
    assert float((a - x).abs().mean()) < float(x.abs().mean())


def test_fit_with_augmentation_trains_on_images() -> None:
    from paramaudit.models import build_model
    from paramaudit.training import fit

    gen = np.random.default_rng(0)
    x = gen.normal(size=(120, 64)).astype(np.float32)
    y = (x[:, :32].mean(axis=1) > 0).astype(np.int64)
    model = build_model("cnn", (1, 8, 8), 2, channels=4, conv_layers=1)
    hist = fit(model, (x[:80], y[:80]), (x[80:], y[80:]), {"learning_rate": 0.01},
               max_epochs=2, augment_shape=(1, 8, 8))
    assert len(hist.val_loss) == 2 and all(np.isfinite(hist.val_loss))


# --------------------------------------------------------------------------- class weights


def test_class_weights_are_n_over_k_times_count() -> None:
    from paramaudit.training import class_weights

    w = class_weights(np.array([0, 0, 0, 1]), 2)
    assert w == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    # every class weighs n / k in all
    y = np.array([0] * 90 + [1] * 9 + [2])
    w = class_weights(y, 3)
    assert [w[c] * (y == c).sum() for c in range(3)] == pytest.approx([100 / 3] * 3)
    # a class with no training row: a weight no row reads; k counts the classes present
    assert class_weights(np.array([0, 0, 2]), 3) == pytest.approx([3 / 4, 1.0, 3 / 2])


def _lopsided(n: int, seed: int) -> Arrays:
    """5% positives, shifted a little: an unweighted loss learns to answer "no"."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int64)
    return (rng.normal(size=(n, 4)) + y[:, None] * 1.2).astype(np.float32), y


def test_balanced_class_weight_lifts_balanced_accuracy_on_a_lopsided_table() -> None:
    from paramaudit.metrics import classification_metrics
    from paramaudit.training import predict_proba

    train, val, (x_te, y_te) = _lopsided(1000, 0), _lopsided(400, 1), _lopsided(1000, 2)
    scores = {}
    for weighting in ("none", "balanced"):
        model = mlp()
        hp = {**HP, "batch_size": 64, "class_weight": weighting}
        trainer = EpochTrainer(model, train, val, hp, seed=0)
        for _ in range(10):
            trainer.step()
        assert (trainer.loss_weight is None) == (weighting == "none")
        m = classification_metrics(y_te, predict_proba(model, x_te), ["no", "yes"])
        scores[weighting] = m["balanced_accuracy"]
    assert scores["none"] < 0.6  # mostly "no": what accuracy (about 0.95) would hide
    assert scores["balanced"] > scores["none"] + 0.2


def test_unknown_class_weight_raises() -> None:
    train, val = blobs()
    with pytest.raises(ValueError, match="class_weight"):
        EpochTrainer(mlp(), train, val, {**HP, "class_weight": "inverse"})


def test_class_weight_is_a_searchable_training_hyperparameter() -> None:
    from paramaudit.config import build_config, resolve_hyperparameters

    cfg = build_config({"search": {"space": {"class_weight": {"choice": ["none", "balanced"]}}}})
    assert cfg.search.space["class_weight"] == {"choice": ["none", "balanced"]}
    assert resolve_hyperparameters({})["class_weight"] == "none"
    with pytest.raises(Exception, match="class_weight"):
        build_config({"search": {"space": {"class_weight": "inverse"}}})


def test_final_model_has_every_splits_metrics_and_the_baseline(iris_splits) -> None:
    hp = {"optimizer": "adam", "learning_rate": 0.02, "batch_size": 16, "num_layers": 1,
          "hidden_size": 16}
    final = train_best(iris_splits, "mlp", hp, max_epochs=15, patience=5, seed=0)
    labels = [str(c) for c in iris_splits.class_names]
    assert final.class_labels == labels
    tm = final.test_metrics
    assert tm["accuracy"] == pytest.approx(final.test_accuracy)
    assert tm["loss"] == final.test_loss and tm["log_loss"] == pytest.approx(final.test_loss, abs=1e-5)
    assert list(tm["per_class"]) == labels and tm["confusion"]["labels"] == labels
    assert sum(map(sum, tm["confusion"]["matrix"])) == len(iris_splits.y_test)
    assert final.baseline["predicts"] in labels
    assert final.baseline["balanced_accuracy"] == pytest.approx(1 / 3)
    assert tm["balanced_accuracy"] > final.baseline["balanced_accuracy"] + 0.3
    assert set(final.split_metrics) == {"train", "val"}
    assert final.split_metrics["val"]["accuracy"] == pytest.approx(
        final.history.val_accuracy[final.history.best_epoch])
