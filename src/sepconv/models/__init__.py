"""The model family, one module per architecture, and the registry that names them.

Importing this package registers every model; see :func:`list_models`. Each module lists its
public names in its own ``__all__`` (a family: its model class and its registered builders) and
is re-exported here whole, as torchvision's ``models`` package does: a new family is one module
and one line below. Model files and weights (``save_model``, ``load_model``, ``load_weights``)
live in :mod:`sepconv.modelfile`.
"""

from sepconv.models._registry import *  # noqa: F403
from sepconv.models.backbone import *  # noqa: F403
from sepconv.models.convnext import *  # noqa: F403
from sepconv.models.efficientnet import *  # noqa: F403
from sepconv.models.efficientnet_v2 import *  # noqa: F403
from sepconv.models.mobilenet_v1 import *  # noqa: F403
from sepconv.models.mobilenet_v2 import *  # noqa: F403
from sepconv.models.mobilenet_v3 import *  # noqa: F403
from sepconv.models.mobilenet_v4 import *  # noqa: F403
from sepconv.models.resnet import *  # noqa: F403
from sepconv.models.vgg import *  # noqa: F403
from sepconv.models.xception import *  # noqa: F403
