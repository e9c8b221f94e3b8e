"""Is the platform healthy and is the model still good: drift, realized quality, service health, model status."""
