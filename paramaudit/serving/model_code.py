"""The registered model's definition as code (MLflow's models-from-code).

MLflow loads this file to get the model: nothing of the pyfunc wrapper is pickled, so loading
a registered model runs only this code and the package it ships (``code/paramaudit``, put on
``sys.path`` first). The predictor itself, the fitted preprocessing and the network's weights,
is the model's ``predictor.pt`` artifact, read by :meth:`PredictorModel.load_context`.
"""

from mlflow.models import set_model

from paramaudit.serving.pyfunc import PredictorModel

set_model(PredictorModel())
