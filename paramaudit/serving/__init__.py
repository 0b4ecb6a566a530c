"""The served model: raw rows in, the target's own labels (or values) out.

:mod:`~paramaudit.serving.rows` reads new rows' raw columns as training read them,
:mod:`~paramaudit.serving.predictor` holds the fitted preprocessing with the network, and
:mod:`~paramaudit.serving.pyfunc` logs it as an MLflow pyfunc model that ships its own code.
No Prefect, Ray or MLflow at import: the logged model imports this package where only torch,
pandas, scikit-learn and MLflow are installed.
"""
