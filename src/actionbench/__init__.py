"""actionbench: train, evaluate and fairly compare video action-recognition models.

    import actionbench
    model = actionbench.build_model("tam_resnet50", num_classes=174, num_frames=8)
    model = actionbench.load_model("runs/my_run/best.pt")   # a trained or converted checkpoint, with .classes
    actionbench.list_models(); actionbench.profile_model("tsm_resnet50")
"""

__version__ = "0.1.0"

# Lazy so that `import actionbench` (and the CLI's --help) does not import torch.
_LAZY = {"build_model": "actionbench.models.registry", "list_models": "actionbench.models.registry",
         "load_model": "actionbench.models.factory", "profile_model": "actionbench.profiling"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actionbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
