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

# The hyperparameters training reads (a model's own come with its registration): the config
# validates search.space against these declarations and fills in their defaults.
LEARNING_RATE = Hyperparameter("learning_rate", float, 1e-3, gt=0, help="the optimiser's step size")
BATCH_SIZE = Hyperparameter("batch_size", int, 64, ge=1, le=1_000_000, help="rows per minibatch")
WEIGHT_DECAY = Hyperparameter("weight_decay", float, 0.0, ge=0, help="L2 penalty")
OPTIMIZER = Hyperparameter("optimizer", str, "adam", choices=OPTIMIZERS, help="the optimiser")
MOMENTUM = Hyperparameter("momentum", float, 0.9, ge=0, lt=1, only_when=("optimizer", ("sgd_momentum",)),
                          help="Nesterov momentum of sgd_momentum")
CLASS_WEIGHT = Hyperparameter("class_weight", str, "none", choices=CLASS_WEIGHTS,
                              help="training-loss class weights: none, or balanced (n / (k * n_c))")
LABEL_SMOOTHING = Hyperparameter("label_smoothing", float, 0.0, ge=0, lt=1,
                                 help="share of each target spread over the other classes")
TRAINING_HYPERPARAMETERS = (LEARNING_RATE, BATCH_SIZE, WEIGHT_DECAY, OPTIMIZER, MOMENTUM, CLASS_WEIGHT,
                            LABEL_SMOOTHING)


