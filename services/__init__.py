"""Long-running processes (predictor, monitor); filled by the serving and monitoring issues."""
