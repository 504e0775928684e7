"""Training: estimators on one protocol, one Lightning trainer, metrics and the saved-model
format.

Every estimator follows :mod:`deepmat.train.estimator` (``fit``, ``predict(return_std=)``,
``evaluate -> dict``, ``save``; ``deepmat.load`` reads it back) and has the presets
``default``, ``paper`` and ``benchmark``. Names are imported on first use, so loading a
composition model does not import Lightning or the image families' libraries.
"""

from deepmat._lazy import lazy_exports

_EXPORTS = {
    "CrystalGraphRegressor": "deepmat.train.crystal",
    "DictionaryIndexer": "deepmat.train.dictionary",
    "IndexingResult": "deepmat.train.dictionary",
    "dictionary_index": "deepmat.train.dictionary",
    "ElementSetRegressor": "deepmat.train.element_sets",
    "Ensemble": "deepmat.train.ensemble",
    "Paired": "deepmat.train.paired",
    "Estimator": "deepmat.train.estimator",
    "calibration_metrics": "deepmat.train.calibration",
    "FCN3DRegressor": "deepmat.train.localization",
    "FitResult": "deepmat.train.config",
    "ForestRegressor": "deepmat.train.regressors",
    "LocalizationRegressor": "deepmat.train.localization",
    "MKSRegressor": "deepmat.train.localization",
    "MicrostructureRegressor": "deepmat.train.microstructure",
    "NetworkLocalizationRegressor": "deepmat.train.localization",
    "NetworkRegressor": "deepmat.train.regressors",
    "OrientationCNNRegressor": "deepmat.train.ebsd",
    "RuleOfMixtures": "deepmat.train.microstructure",
    "SiteElementClassifier": "deepmat.train.site_elements",
    "SiteNetworkRegressor": "deepmat.train.crystal",
    "SliceCNNRegressor": "deepmat.train.localization",
    "TargetScaler": "deepmat.train.config",
    "TrainConfig": "deepmat.train.config",
    "TwoPointPCARegressor": "deepmat.train.microstructure",
    "UncertaintyUnavailable": "deepmat.train.estimator",
    "VoxelCNNRegressor": "deepmat.train.microstructure",
    "fit_network": "deepmat.train.trainer",
    "load_model": "deepmat.train.saved",
    "mean_absolute_percentage_error": "deepmat.train.metrics",
    "mean_absolute_strain_error": "deepmat.train.metrics",
    "orientation_metrics": "deepmat.train.ebsd",
    "parity_plot": "deepmat.train.metrics",
    "register_family": "deepmat.train.saved",
    "regression_metrics": "deepmat.train.metrics",
    "save_model": "deepmat.train.saved",
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
