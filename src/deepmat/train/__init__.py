"""Training: one Lightning trainer, metrics, estimators and the saved-model format."""

from deepmat.train.metrics import parity_plot, regression_metrics
from deepmat.train.regressors import ForestRegressor, NetworkRegressor
from deepmat.train.saved import load_model, save_model
from deepmat.train.trainer import TargetScaler, TrainConfig, fit_network

__all__ = [
    "ForestRegressor",
    "NetworkRegressor",
    "TargetScaler",
    "TrainConfig",
    "fit_network",
    "load_model",
    "parity_plot",
    "regression_metrics",
    "save_model",
]
