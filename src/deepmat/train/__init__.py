"""Training: one Lightning trainer, metrics, estimators and the saved-model format."""

from deepmat.train.ebsd import OrientationCNNRegressor, orientation_metrics
from deepmat.train.localization import (
    FCN3DRegressor,
    LocalizationRegressor,
    MKSRegressor,
    SliceCNNRegressor,
)
from deepmat.train.metrics import (
    mean_absolute_percentage_error,
    mean_absolute_strain_error,
    parity_plot,
    regression_metrics,
)
from deepmat.train.microstructure import (
    MicrostructureRegressor,
    RuleOfMixtures,
    TwoPointPCARegressor,
    VoxelCNNRegressor,
)
from deepmat.train.regressors import ForestRegressor, NetworkRegressor
from deepmat.train.saved import load_model, save_model
from deepmat.train.trainer import TargetScaler, TrainConfig, fit_network

__all__ = [
    "FCN3DRegressor",
    "ForestRegressor",
    "LocalizationRegressor",
    "MKSRegressor",
    "MicrostructureRegressor",
    "NetworkRegressor",
    "OrientationCNNRegressor",
    "RuleOfMixtures",
    "SliceCNNRegressor",
    "TargetScaler",
    "TrainConfig",
    "TwoPointPCARegressor",
    "VoxelCNNRegressor",
    "fit_network",
    "load_model",
    "mean_absolute_percentage_error",
    "mean_absolute_strain_error",
    "orientation_metrics",
    "parity_plot",
    "regression_metrics",
    "save_model",
]
