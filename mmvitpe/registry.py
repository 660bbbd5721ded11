"""mmvitpe's registries.

``MODELS``, ``OPTIM_WRAPPER_CONSTRUCTORS``, ``PARAM_SCHEDULERS``, ``MODEL_WRAPPERS`` and
``HOOKS`` are children
of mmengine's root registries with their own scope, so ``type='mmvitpe.ViTAdapter'``
resolves whatever the default scope is (mmdet, mmseg, mmengine) without touching the
global namespace that mmdet and mmseg share (see docs: registration).

``POS_ENCODINGS`` has no parent on purpose: a scheme is always looked up here,
so a backbone built under the mmdet or mmseg default scope still finds
``pos_embed=dict(type='LaPE')``.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmvitpe',
                  locations=['mmvitpe.models'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmvitpe', locations=['mmvitpe.engine'])
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
                            scope='mmvitpe', locations=['mmvitpe.engine'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='mmvitpe',
                          locations=['mmvitpe.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmvitpe', locations=['mmvitpe.engine'])
POS_ENCODINGS = Registry('positional encoding', scope='mmvitpe',
                         locations=['mmvitpe.models.pos_encodings'])
