"""Features, fitting, training runs in MLflow, and the registry with its gate and audit log."""
