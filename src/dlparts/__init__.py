"""dlparts: the classic parts of deep learning for vision and 3-D point clouds, faithful to the papers and fast."""

from dlparts.errors import DlpartsError
from dlparts.models.registry import create_model, get_model_info, list_models, register_model

__version__ = "0.1.0"


def summarize(model, input_shape, **kwargs):
    """Per-layer shapes, parameters, MACs/FLOPs, receptive field and activation memory; see :mod:`dlparts.summary`."""
    from dlparts.summary import summarize as _summarize

    return _summarize(model, input_shape, **kwargs)


__all__ = ["DlpartsError", "create_model", "get_model_info", "list_models", "register_model", "summarize", "__version__"]
