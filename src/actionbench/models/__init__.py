"""Video models: `build_model` and `list_models`."""

from actionbench.models.registry import build_model, list_models, register_model

__all__ = ["build_model", "list_models", "register_model"]
