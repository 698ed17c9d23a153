"""Ray Train jobs (datasets, CNN, XGBoost, evaluation, promotion gate); filled by the training issue."""
