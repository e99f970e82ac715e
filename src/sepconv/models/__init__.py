"""The model family, one module per architecture, and the registry that names them.

Importing this package registers every model; see :func:`list_models`.
"""

from sepconv.models._registry import (
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    published_model_info,
    register_model,
)
from sepconv.models.backbone import Backbone, FeatureInfo
from sepconv.models.efficientnet import (
    EfficientNet,
    efficientnet_b0,
    efficientnet_b1,
    efficientnet_b2,
    efficientnet_b3,
    efficientnet_b4,
    efficientnet_b5,
    efficientnet_b6,
    efficientnet_b7,
)
from sepconv.models.mobilenet_v1 import (
    MobileNetV1,
    mobilenet_v1,
    mobilenet_v1_025,
    mobilenet_v1_050,
    mobilenet_v1_075,
)
from sepconv.models.mobilenet_v2 import (
    MobileNetV2,
    mobilenet_v2,
    mobilenet_v2_050,
    mobilenet_v2_075,
)
from sepconv.models.resnet import ResNet, resnet50
from sepconv.models.vgg import VGG, vgg16
from sepconv.models.weights import load_model, load_weights, save_model
from sepconv.models.xception import Xception, xception

__all__ = [
    "VGG",
    "Backbone",
    "EfficientNet",
    "FeatureInfo",
    "MobileNetV1",
    "MobileNetV2",
    "ModelInfo",
    "ResNet",
    "Xception",
    "create_model",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "get_model_info",
    "list_models",
    "load_model",
    "load_weights",
    "mobilenet_v1",
    "mobilenet_v1_025",
    "mobilenet_v1_050",
    "mobilenet_v1_075",
    "mobilenet_v2",
    "mobilenet_v2_050",
    "mobilenet_v2_075",
    "published_model_info",
    "register_model",
    "resnet50",
    "save_model",
    "vgg16",
    "xception",
]
