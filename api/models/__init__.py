"""/v1/models: the catalogue's base models and this project's tuned models."""
