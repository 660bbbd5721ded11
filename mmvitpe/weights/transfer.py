"""Move released weights into a ViT of mmvitpe, across layouts and PE schemes.

:func:`remap` turns a source state dict into this model's keys: mmvitpe's own, whole
mmdet/mmseg models, timm/DeiT, the original ViT-Adapter, LaPE, SP-ViT, CPVT/Twins,
rope-vit, MAE, BEiT, DINOv2, DINOv3 and EVA-02 (official or timm); docs/weights.md
holds the list with what is read of each. It is the generic walk only: which
foreign keys exist and how they convert is known by the module that owns the
parameters (the ViT core, the spatial prior module, each PE scheme; see
``ownership.py``). So weights trained with scheme A load into scheme B: shared
tensors load, B's own parameters keep their (neutral where the scheme has one)
initialisation, and A-only tensors are reported as dropped.

It serves every loading path: ``init_cfg=dict(type='Pretrained')`` (via
``PEViT.init_weights``), ``load_from`` and ``--resume`` (via a state-dict
pre-hook on the backbone), and ``tools/convert_weights.py``.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from torch import Tensor, nn

from .ownership import Claim, ForeignWeights
from .families import FAMILIES, convert_families
from .reader import IncompatibleCheckpointError, check_bounded, non_finite, tensor_kind


@dataclass
class LoadReport:
    """What happened to every tensor of a load.

    ``new`` and ``missing`` map each parameter left at its initialisation to why:
    the rule that lets it start new, or what the checkpoint lacks.
    """
    loaded: List[str] = field(default_factory=list)
    resized: Dict[str, str] = field(default_factory=dict)
    new: Dict[str, str] = field(default_factory=dict)
    dropped: Dict[str, str] = field(default_factory=dict)
    unexpected: List[str] = field(default_factory=list)
    missing: Dict[str, str] = field(default_factory=dict)
    non_finite: List[str] = field(default_factory=list)
    families: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unexpected and not self.missing and not self.non_finite

    def table(self) -> str:
        rows = [('loaded', len(self.loaded), _keys(self.loaded)),
                ('resized', len(self.resized),
                 _keys(f'{k} ({v})' for k, v in self.resized.items())),
                ('newly initialised', len(self.new), _by_reason(self.new)),
                ('dropped', len(self.dropped),
                 _keys(f'{k} ({v})' for k, v in self.dropped.items())),
                ('unexpected', len(self.unexpected), _keys(self.unexpected)),
                ('missing', len(self.missing), _by_reason(self.missing)),
                ('non-finite', len(self.non_finite), _keys(self.non_finite))]
        width = max(len(r[0]) for r in rows)
        return '\n'.join(f'{name:<{width}} | {count:>5} | {text}' for name, count, text in rows)


def _keys(items, limit: int = 6) -> str:
    items = list(items)
    text = ', '.join(items[:limit])
    return text + (f', ... (+{len(items) - limit})' if len(items) > limit else '')


def _by_reason(reasons: Dict[str, str]) -> str:
    """``keys: reason`` per distinct reason (a rule usually covers a whole group)."""
    groups: Dict[str, List[str]] = {}
    for key, reason in reasons.items():
        groups.setdefault(reason, []).append(key)
    return '; '.join(f'{_keys(keys, 3)}: {reason}' for reason, keys in groups.items())


def _group(key: str) -> str:
    """The parameter's name with its indices as ``*`` (``blocks.*.ls1.gamma``):
    the tensors of one kind across blocks, members and levels."""
    return re.sub(r'(?<=\.)\d+(?=\.)|^\d+(?=\.)', '*', key)


def _owners(model: nn.Module) -> List[Tuple[str, ForeignWeights]]:
    """(prefix, module) of every weight owner in ``model``, deepest first, less
    those inside an owner that routes for them."""
    owners = [(name + '.' if name else '', m) for name, m in model.named_modules()
              if isinstance(m, ForeignWeights)]
    routers = [p for p, m in owners if m.routes_inner_owners]
    owners = [(p, m) for p, m in owners
              if not any(p != r and p.startswith(r) for r in routers)]
    return sorted(owners, key=lambda o: -o[0].count('.'))


def _claim(owners, key: str, value: Tensor, source: str) -> Tuple[str, Claim]:
    """The one owner's claim on a source tensor (prefix, claim), or ('', None);
    errors name it as the file does (``source``)."""
    try:
        claims = [(prefix, type(owner).__name__, claim) for prefix, owner in owners
                  for claim in [owner.claim_foreign(key, value, prefix)] if claim is not None]
    except ValueError as e:  # an owner's tensor that does not fit: name the key
        raise IncompatibleCheckpointError(f'{source}: {e}') from None
    if len(claims) > 1:
        names = ', '.join(f'{name} at {prefix or "the root"!r}' for prefix, name, _ in claims)
        raise IncompatibleCheckpointError(f'{source}: claimed by more than one part of the model '
                                          f'({names}); a tensor can feed only one')
    return (claims[0][0], claims[0][2]) if claims else ('', None)


def remap(state: Dict[str, Tensor], model: nn.Module, source_config: Optional[dict] = None
          ) -> Tuple[Dict[str, Tensor], LoadReport]:
    """Source tensors (keys relative to the ViT) -> ``model``'s keys, with a report.

    A checkpoint family's layout (DINOv2's, transformers', ...) is translated
    first (:mod:`mmvitpe.weights.families`; with a hub ``config.json``,
    ``source_config``, its values are compared with the model's). Keys already in
    ``model``'s layout load as they are. Every other key is
    offered to the model's weight owners (:class:`ForeignWeights`): the one
    that claims it converts it, or says why it is dropped; a key nobody
    claims is unexpected. Parameters left unloaded are missing when their
    owner requires them from a checkpoint, else newly initialised.
    """
    targets = model.state_dict()
    report, out, source_of, invented = LoadReport(), {}, {}, {}
    for key, value in state.items():
        check_bounded('source state dict', key, value)  # before any resize, cast or merge
        if non_finite(value):
            report.non_finite.append(key)
    if source_config is not None:
        for family in FAMILIES.values():
            if source_config.get('model_type') in family.model_types:
                family.check_config(source_config, model)
    state, report.families, report.dropped, origin = convert_families(state, targets,
                                                                      source_config)
    owners = _owners(model)
    for prefix, owner in owners:
        state = owner.merge_foreign(state, prefix)
    for key, value in state.items():
        source = origin.get(key, key)  # the file's name for it, before a family renamed it
        if key not in targets:
            prefix, claim = _claim(owners, key, value, source)
        elif value.shape == targets[key].shape:
            prefix, claim = '', Claim({key: value})
        else:  # the owner may resize a tensor of its own name (a patch kernel of
            # another size); anything else it says is no answer: the shape error below
            prefix, claim = _claim(owners, key, value, source)
            if claim is None or [prefix + k for k in claim.tensors] != [key]:
                prefix, claim = '', Claim({key: value})
        if claim is None:
            report.unexpected.append(source)
            continue
        if not claim.tensors:
            report.dropped[source] = claim.dropped
            continue
        for name, tensor in claim.tensors.items():
            target = prefix + name
            if target not in targets:
                report.unexpected.append(source)
                continue
            if target in source_of:
                raise IncompatibleCheckpointError(
                    f'{source_of[target]} and {source} both load into {target}: the checkpoint '
                    'holds it twice; remove one of them')
            if tensor.shape != targets[target].shape:
                raise IncompatibleCheckpointError(
                    f'{source} -> {target}: shape {tuple(tensor.shape)} does not fit '
                    f'{tuple(targets[target].shape)}')
            if tensor_kind(tensor) != tensor_kind(targets[target]):
                raise IncompatibleCheckpointError(
                    f'{source} -> {target}: a {tensor.dtype} tensor where the model has '
                    f'{targets[target].dtype}; {tensor_kind(tensor)} values are not cast to '
                    f'{tensor_kind(targets[target])}')
            if tensor.shape != value.shape:
                report.resized[target] = f'{tuple(value.shape)} -> {tuple(tensor.shape)}'
            else:
                report.loaded.append(target)
            if claim.invented and name in claim.invented:
                invented[target] = f'{claim.invented[name]} (from {source})'
            out[target], source_of[target] = tensor, source
    _account_for_the_rest(targets, out, invented, owners, report)
    return out, report


def _account_for_the_rest(targets, out, invented, owners, report: LoadReport) -> None:
    """Every parameter the checkpoint did not fill whole: newly initialised by its
    owner's stated rule, else missing. A rule never covers a parameter whose kind
    (``_group``) the checkpoint holds elsewhere: that checkpoint's family has it."""
    filled = {_group(k) for k in out if k not in invented}
    report.missing.update(invented)
    for key in targets:
        if key in out:
            continue
        prefix, owner = next(((p, o) for p, o in owners if key.startswith(p)), ('', None))
        reason = owner.new_start_reason(key[len(prefix):]) if owner is not None else None
        if reason is None:
            report.missing[key] = 'the checkpoint lacks it'
        elif _group(key) in filled:
            report.missing[key] = (f'the checkpoint holds {_group(key)} for other indices '
                                   'but not this one')
        else:
            report.new[key] = reason


def load_pretrained(model: nn.Module, state: Dict[str, Tensor], strict: bool = True,
                    source_config: Optional[dict] = None) -> LoadReport:
    """Load source tensors into ``model`` through :func:`remap`.

    Args:
        source_config: A hub model directory's ``config.json``: its values must agree
            with the model's (width, depth, heads, patch size, registers, RoPE theta).
        strict: Fail on anything unexplained: source tensors with no place in
            the model, parameters the checkpoint lacks that no stated rule lets
            start new (``new_start_reason``; the report gives each rule), and
            NaN or inf values.

    Raises:
        IncompatibleCheckpointError: in strict mode, naming the unexplained keys.
    """
    mapped, report = remap(state, model, source_config)
    if strict and not report.ok:
        lines = [f'strict load into {type(model).__name__} failed:']
        if report.unexpected:
            lines.append(f'  unexpected (no place in the model): {", ".join(report.unexpected)}')
        if report.missing:
            lines.append('  missing (weights the checkpoint lacks): ' + '; '.join(
                f'{k} ({why})' for k, why in report.missing.items()))
        if report.non_finite:
            lines.append('  non-finite (NaN or inf values): ' + ', '.join(report.non_finite))
        lines.append("  pass strict=False (init_cfg) or --no-strict to load anyway")
        raise IncompatibleCheckpointError('\n'.join(lines))
    model.load_state_dict(mapped, strict=False)
    return report
