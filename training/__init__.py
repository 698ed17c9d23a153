"""Ray Train jobs: datasets and time plan, CNN (TorchTrainer), XGBoost (XGBoostTrainer), walk-forward
evaluation and backtest, report, and the promotion gate. ``job`` ties them together; the CLI's
``tradeloop train`` is its front end."""
