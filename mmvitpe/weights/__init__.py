"""Bringing released weights into mmvitpe models (see transfer.py)."""
from .ownership import Claim, ForeignWeights
from .reader import (CheckpointError, IncompatibleCheckpointError, backbone_part,
                     read_source_config, read_state_dict)
from .transfer import LoadReport, load_pretrained, remap

__all__ = ['CheckpointError', 'Claim', 'ForeignWeights', 'IncompatibleCheckpointError',
           'backbone_part', 'read_source_config', 'read_state_dict', 'LoadReport',
           'load_pretrained', 'remap']
