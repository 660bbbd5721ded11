"""Bringing released weights into mmvitpe models (see transfer.py)."""
from .reader import CheckpointError, backbone_part, read_state_dict
from .transfer import LoadReport, load_pretrained, remap

__all__ = ['CheckpointError', 'backbone_part', 'read_state_dict', 'LoadReport', 'load_pretrained', 'remap']
