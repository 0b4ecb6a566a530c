"""The final model refit on train + val, label smoothing, and the scaler chosen by the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paramaudit.config import PipelineConfig
from paramaudit.data import load_and_split
from paramaudit.data.preprocess import resolve_scaler
from paramaudit.final_model import refit, train_best
from paramaudit.training import EpochTrainer

HP = {"learning_rate": 1e-2, "batch_size": 32, "hidden_size": 16, "num_layers": 1}


@pytest.fixture(scope="module")
def iris():
    torch.set_num_threads(1)
    return load_and_split(PipelineConfig.model_validate({"data": {"dataset": "iris"}}))


def test_refit_trains_on_train_and_val_and_keeps_the_selection(iris) -> None:
    chosen = train_best(iris, "mlp", HP, max_epochs=15, patience=5, seed=0)
    final = refit(iris, "mlp", chosen, epochs=chosen.history.best_epoch + 1, seed=0)
    assert final.selection is chosen
    assert final.source == f"refit on train + val, {chosen.history.best_epoch + 1} epochs"
    # the curves the verdict judges, and the held-out train/val scores, are the selection's
    assert final.history is chosen.history
    assert final.split_metrics == chosen.split_metrics
    # a different model with its own test score
    assert not all(torch.equal(a, b) for a, b in zip(final.model.state_dict().values(),
                                                    chosen.model.state_dict().values(), strict=True))
    assert 0.0 <= final.test_accuracy <= 1.0 and final.test_metrics["n"] == len(iris.y_test)


def test_refit_is_deterministic(iris) -> None:
    chosen = train_best(iris, "mlp", HP, max_epochs=5, patience=5, seed=0)
    a = refit(iris, "mlp", chosen, epochs=3, seed=0)
    b = refit(iris, "mlp", chosen, epochs=3, seed=0)
    assert a.test_loss == b.test_loss


def test_refit_on_digits_beats_the_train_split_alone() -> None:
    """The point of refitting: a third more rows to learn from (digits, one seed, fixed shape)."""
    splits = load_and_split(PipelineConfig())
    hp = {"learning_rate": 1e-3, "batch_size": 32, "hidden_size": 256, "num_layers": 1,
          "dropout": 0.2, "label_smoothing": 0.1, "optimizer": "adamw", "weight_decay": 1e-3}
    chosen = train_best(splits, "mlp", hp, max_epochs=20, patience=5, seed=0)
    final = refit(splits, "mlp", chosen, epochs=chosen.history.best_epoch + 1, seed=0)
    assert final.test_accuracy >= chosen.test_accuracy - 0.003  # never much worse...
    assert final.test_accuracy >= 0.975                           # ...and good on this split


def test_label_smoothing_softens_the_training_loss_only(iris) -> None:
    def trained(smoothing: float) -> EpochTrainer:
        torch.manual_seed(0)
        from paramaudit.models import build_model

        model = build_model("mlp", tuple(iris.input_shape), iris.n_classes, **HP)
        t = EpochTrainer(model, (iris.x_train, iris.y_train), (iris.x_val, iris.y_val),
                         {**HP, "label_smoothing": smoothing}, seed=0)
        for _ in range(20):
            t.step()
        return t

    plain, smooth = trained(0.0), trained(0.3)
    # smoothed targets keep the logits from growing: the model is less confident on train rows
    with torch.no_grad():
        x = torch.as_tensor(iris.x_train)
        p_plain = torch.softmax(plain.model.eval()(x), 1).max(1).values.mean()
        p_smooth = torch.softmax(smooth.model.eval()(x), 1).max(1).values.mean()
    assert p_smooth < p_plain
    # val loss is the plain cross-entropy either way (comparable across trials)
    assert np.isfinite(smooth.history.val_loss[-1])


def test_the_auto_scaler_is_minmax_for_images_and_standard_for_tables() -> None:
    assert resolve_scaler("auto", (1, 8, 8)) == "minmax"
    assert resolve_scaler("auto", None) == "standard"
    assert resolve_scaler("robust", (1, 8, 8)) == "robust"
    digits = load_and_split(PipelineConfig())
    assert digits.scaler.kind == "minmax"
    assert digits.x_train.min() >= 0.0 and digits.x_train.max() <= 1.0
    iris = load_and_split(PipelineConfig.model_validate({"data": {"dataset": "iris"}}))
    assert iris.scaler.kind == "standard"
