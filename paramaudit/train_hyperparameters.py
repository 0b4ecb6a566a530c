"""The hyperparameters the training loop reads, declared without importing torch.

The config validates search.space against these (and each model's own declarations) before
anything heavy loads, so a bad config fails in well under a second.
"""

from __future__ import annotations

from paramaudit.models.hyperparameters import Hyperparameter

# by the names a config gives; paramaudit.training maps each to its torch.optim class
OPTIMIZERS: tuple[str, ...] = ("sgd", "sgd_momentum", "adam", "adamw", "rmsprop")
# how the training loss weighs the classes: "balanced" gives class c the weight n / (k * n_c),
# counted on the training split (paramaudit.training.class_weights), so that each class weighs
# as much as the others in the loss however rare it is
CLASS_WEIGHTS: tuple[str, ...] = ("none", "balanced")
# the regression training loss on the standardised target: mean squared error, or Huber
# (delta 1, i.e. one training-split std: squared below it, linear above, so outliers pull less)
LOSSES: tuple[str, ...] = ("mse", "huber")

# The hyperparameters training reads (a model's own come with its registration): the config
# validates search.space against these declarations and fills in their defaults.
LEARNING_RATE = Hyperparameter("learning_rate", float, 1e-3, gt=0, help="the optimiser's step size")
BATCH_SIZE = Hyperparameter("batch_size", int, 64, ge=1, le=1_000_000, help="rows per minibatch")
WEIGHT_DECAY = Hyperparameter("weight_decay", float, 0.0, ge=0, help="L2 penalty")
OPTIMIZER = Hyperparameter("optimizer", str, "adam", choices=OPTIMIZERS, help="the optimiser")
MOMENTUM = Hyperparameter("momentum", float, 0.9, ge=0, lt=1, only_when=("optimizer", ("sgd_momentum",)),
                          help="Nesterov momentum of sgd_momentum")
# only_when=("task", ...): read for one task alone (the run's task, which resolve_hyperparameters
# is told; "task" is no hyperparameter of its own)
CLASS_WEIGHT = Hyperparameter("class_weight", str, "none", choices=CLASS_WEIGHTS,
                              only_when=("task", ("classification",)),
                              help="training-loss class weights: none, or balanced (n / (k * n_c))")
LABEL_SMOOTHING = Hyperparameter("label_smoothing", float, 0.0, ge=0, lt=1,
                                 only_when=("task", ("classification",)),
                                 help="share of each target spread over the other classes")
LOSS = Hyperparameter("loss", str, "mse", choices=LOSSES, only_when=("task", ("regression",)),
                      help="regression training loss: mse, or huber (delta 1 std)")
TRAINING_HYPERPARAMETERS = (LEARNING_RATE, BATCH_SIZE, WEIGHT_DECAY, OPTIMIZER, MOMENTUM, CLASS_WEIGHT,
                            LABEL_SMOOTHING, LOSS)


