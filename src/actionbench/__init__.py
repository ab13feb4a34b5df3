"""actionbench: train, evaluate and fairly compare video action-recognition models."""

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "list_models"]


def __getattr__(name: str):
    # Lazy so that `import actionbench` (and the CLI's --help) does not import torch.
    if name in ("build_model", "list_models"):
        from actionbench.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'actionbench' has no attribute {name!r}")
