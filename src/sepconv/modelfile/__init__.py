"""Model files and weights: sepconv's file format, loading and saving, other sources' key names.

One format holds every file sepconv writes with weights in it (:mod:`~sepconv.modelfile.format`):
a safetensors file whose header records how to rebuild the model
(:class:`~sepconv.modelfile.record.ModelRecord`: the registered architecture, its builder
arguments and the conversions applied after building) and its extras (normalisation, classes,
training config). :func:`save_model`, :func:`load_model` and :func:`load_weights` are the way in
and out (:mod:`~sepconv.modelfile.weights`); torchvision's, timm's and earlier sepconv versions'
key names are mapped by :mod:`~sepconv.modelfile.interop`, and weights that do not fit are
summarised by :mod:`~sepconv.modelfile.mismatch`.

This package sits above the models and the conversions: it rebuilds a converted model by
replaying its conversions, and neither :mod:`sepconv.models` nor :mod:`sepconv.convert` imports
it.
"""

from sepconv.modelfile.format import (
    FORMAT_VERSION,
    METADATA_KEY,
    ModelFile,
    read_model_file,
    read_safetensors,
    write_model_file,
    write_safetensors,
)
from sepconv.modelfile.interop import KEY_MAPS, convert_state_dict, upgrade_keys
from sepconv.modelfile.mismatch import weight_mismatch
from sepconv.modelfile.record import ModelRecord
from sepconv.modelfile.weights import load_model, load_weights, save_model

__all__ = [
    "FORMAT_VERSION",
    "KEY_MAPS",
    "METADATA_KEY",
    "ModelFile",
    "ModelRecord",
    "convert_state_dict",
    "load_model",
    "load_weights",
    "read_model_file",
    "read_safetensors",
    "save_model",
    "upgrade_keys",
    "weight_mismatch",
    "write_model_file",
    "write_safetensors",
]
