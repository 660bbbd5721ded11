"""Several positional-encoding schemes in one model (BEiT: absolute + relative
bias; rope-vit: learned APE + RoPE; SP-ViT: APE + SP-SA + PEG).

``pos_embed=[dict(type=A, ...), dict(type=B, ...)]``, or the same list as
``pos_embed=dict(type='Compose', schemes=[...])``, builds :class:`Compose`. It
holds the members as ``members`` (an ``nn.ModuleList``), so a member's
parameter ``<name>`` is ``pe.members.<i>.<name>`` (``i`` in list order; e.g.
``pe.members.0.table.weight``), and runs every site through them in list order:

=========================================  =====================================
site                                        composite
=========================================  =====================================
``prepare``                                 one state per member (``CompositeState.members``)
``embed``, ``attention_input``,             chained: member i+1 sees member i's output
``after_block``, ``final``, ``rotate``
``logit_terms``                             biases add, gains multiply
=========================================  =====================================

A composite listed as a member (a preset inside a list) is flattened into the
list. Rejected at construction, with the reason: no members; two members acting
at the final norm (one norm takes one PE term: two would be a second copy of
the same LN'(pos) term); a member listed twice with the same arguments (its two
copies would learn one term twice: a config duplicated by inheritance); and
anything a member itself rejects (MPVG with a class token), naming the member.
Everything else combines, e.g. two input tables (LearnedPE + SinCosPE) or RoPE
in some blocks and SP-SA in others.

Weights: the composite routes every source tensor to the one member that
claims it (an error names both when two do). Our own single-scheme keys
(``pe.<name>``) go to the member that has ``<name>``, and another composite's
(``pe.members.<j>.<name>``) likewise, so a single-scheme checkpoint loads into
a composite containing that scheme and back (``PositionalEncoding.claim_foreign``),
the rest reported as new or dropped. Layer-wise lr decay asks the member.
"""
import inspect
from dataclasses import dataclass
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.weights.ownership import Claim
from mmvitpe.weights.reader import IncompatibleCheckpointError
from .base import Grid, PEState, PositionalEncoding, composite_member_key, layout_owners

CONTEXT_ARGS = frozenset(inspect.signature(PositionalEncoding.__init__).parameters) - {'self'}


@dataclass
class CompositeState(PEState):
    """A composite's state: each member's own state, in member order."""
    members: Tuple[PEState, ...] = ()


def _effective_arguments(member: PositionalEncoding, cfg: dict) -> dict:
    """A member's config with the defaults of its class filled in, tuples as lists:
    ``dict(type='PEG')`` and ``dict(type='PEG', blocks=[0])`` are one member."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value
    defaults = {name: p.default
                for name, p in inspect.signature(type(member).__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    given = {k: v for k, v in cfg.items() if k != 'type'}
    return plain(dict(defaults, **given, type=type(member).__name__))


class Compose(PositionalEncoding):
    """Members' sites run in list order; see the module docstring.

    Not in the registry's list of schemes (it has no meaning without members);
    ``build_pos_encoding`` knows its name and builds it from a list.

    Args:
        schemes: Member configs, ``dict(type=<scheme>, **args)`` each.
        **kwargs: The model context (see :class:`PositionalEncoding`), given
            to every member.
    """
    routes_inner_owners = True

    def __init__(self, schemes: Sequence[dict], **kwargs) -> None:
        from . import build_pos_encoding  # the package builds members (and us)
        super().__init__(**kwargs)
        context = {k: v for k, v in kwargs.items() if k != 'init_cfg'}
        if isinstance(schemes, dict) or not schemes:
            raise ValueError(f'Compose: schemes must be a non-empty list of scheme configs, '
                             f'got {schemes!r}')
        members, configs = [], []
        for i, cfg in enumerate(schemes):
            try:
                member = build_pos_encoding(cfg, **context)
            except (TypeError, ValueError) as err:
                raise type(err)(f'pos_embed member {i} ({_type_name(cfg)}): {err}') from err
            if isinstance(member, Compose):
                members.extend(member.members)
                configs.extend(member.member_configs)
            else:
                members.append(member)
                configs.append(dict(cfg))
        self.member_configs = configs
        self._reject_nonsense(members, configs)
        self.members = nn.ModuleList(members)
        self.acts_at_final_norm = any(m.acts_at_final_norm for m in members)
        self.supports_class_token = all(m.supports_class_token for m in members)

    @staticmethod
    def _reject_nonsense(members: List[PositionalEncoding], configs: List[dict]) -> None:
        finals = [f'{i} ({type(m).__name__})' for i, m in enumerate(members)
                  if m.acts_at_final_norm]
        if len(finals) > 1:
            raise ValueError(f'pos_embed members {" and ".join(finals)} both add a term at the '
                             'final norm; a composite can hold one final-norm term')
        effective = [_effective_arguments(m, cfg) for m, cfg in zip(members, configs)]
        for i, args in enumerate(effective):
            if args in effective[:i]:
                first = effective.index(args)
                raise ValueError(f'pos_embed member {i} ({configs[i]!r}) repeats member {first} '
                                 f'({configs[first]!r}): the same arguments once defaults are '
                                 'filled in; remove one, or give them different '
                                 'blocks/arguments')

    def describe(self) -> str:
        return f'{type(self).__name__}({", ".join(type(m).__name__ for m in self.members)})'

    # ---- the sites ----------------------------------------------------------
    def prepare(self, grid: Grid, device: torch.device, dtype: torch.dtype) -> CompositeState:
        return CompositeState(tuple(grid), members=tuple(
            m.prepare(grid, device, dtype) for m in self.members))

    def embed(self, x: Tensor, state: CompositeState) -> Tensor:
        for member, own in zip(self.members, state.members):
            x = member.embed(x, own)
        return x

    def attention_input(self, x: Tensor, block: int, state: CompositeState) -> Tensor:
        for member, own in zip(self.members, state.members):
            x = member.attention_input(x, block, own)
        return x

    def rotate(self, qk: Tensor, block: int, state: CompositeState) -> Tensor:
        for member, own in zip(self.members, state.members):
            qk = member.rotate(qk, block, own)
        return qk

    def logit_terms(self, block: int, attn_grid: Grid, state: CompositeState,
                    num_prefix: int) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        bias = gain = None
        for member, own in zip(self.members, state.members):
            b, g = member.logit_terms(block, attn_grid, own, num_prefix)
            if b is not None:
                bias = b if bias is None else bias + b
            if g is not None:
                gain = g if gain is None else gain * g
        return bias, gain

    def query_terms(self, q: Tensor, block: int, attn_grid: Grid, state: CompositeState,
                    num_prefix: int) -> Optional[Tensor]:
        terms = [t for t in (member.query_terms(q, block, attn_grid, own, num_prefix)
                             for member, own in zip(self.members, state.members))
                 if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def after_block(self, x: Tensor, block: int, state: CompositeState) -> Tensor:
        for member, own in zip(self.members, state.members):
            x = member.after_block(x, block, own)
        return x

    def final(self, x: Tensor, state: CompositeState) -> Tensor:
        for member, own in zip(self.members, state.members):
            x = member.final(x, own)
        return x

    # ---- weights -------------------------------------------------------------
    def _split(self, name: str) -> Tuple[PositionalEncoding, str]:
        index, rest = name.split('.', 2)[1:]
        return self.members[int(index)], rest

    def merge_foreign(self, state: Dict[str, Tensor], prefix: str) -> Dict[str, Tensor]:
        for i, member in enumerate(self.members):
            state = member.merge_foreign(state, f'{prefix}members.{i}.')
        return state

    def claim_foreign(self, key: str, value: Tensor, prefix: str) -> Optional[Claim]:
        """Our own layouts by parameter name; foreign ones by the members' claims."""
        own = (composite_member_key(key, prefix) or key[len(prefix):]
               if prefix and key.startswith(prefix) else None)
        if own is not None:
            holders = [i for i, m in enumerate(self.members) if own in m.state_dict()]
            self._one_holder(key, holders)
            if holders:
                return Claim({f'members.{holders[0]}.{own}': value})
            return Claim({}, f'PE tensor that no member of {self.describe()} has')
        claims = [(i, m.claim_foreign(key, value, f'{prefix}members.{i}.'))
                  for i, m in enumerate(self.members)]
        taken = [(i, c) for i, c in claims if c is not None and c.tensors]
        self._one_holder(key, [i for i, _ in taken])
        if taken:
            i, claim = taken[0]
            return Claim({f'members.{i}.{k}': v for k, v in claim.tensors.items()},
                         invented={f'members.{i}.{k}': v
                                   for k, v in (claim.invented or {}).items()})
        if any(c is not None for _, c in claims):
            owners = layout_owners(key)
            return Claim({}, f'PE tensor that no member of {self.describe()} uses' +
                         (f' (layout of {", ".join(owners)})' if owners else ''))
        return None

    def _one_holder(self, key: str, holders: List[int]) -> None:
        if len(holders) > 1:
            names = ' and '.join(f'{i} ({type(self.members[i]).__name__})' for i in holders)
            raise IncompatibleCheckpointError(
                f'{key}: claimed by pos_embed members {names}; a tensor can feed '
                f'only one: rename it to pe.members.<i>.<name> or drop it')

    def new_start_reason(self, name: str) -> Optional[str]:
        member, rest = self._split(name)
        return member.new_start_reason(rest)

    def stack_position(self, name: str) -> int:
        member, rest = self._split(name)
        return member.stack_position(rest)

    # ---- analysis -----------------------------------------------------------------
    def relative_maps(self, grid: Grid) -> Dict[str, Tensor]:
        return {f'members.{i}.{k}': v for i, m in enumerate(self.members)
                for k, v in m.relative_maps(grid).items()}

    def frequencies(self) -> Optional[Tensor]:
        found = [f for f in (m.frequencies() for m in self.members) if f is not None]
        if len(found) > 1:
            raise ValueError(f'{self.describe()} has several rotary members; draw them one by one '
                             '(pe.members[i].frequencies())')
        return found[0] if found else None


def _type_name(cfg) -> str:
    return cfg.get('type', '?') if isinstance(cfg, dict) else type(cfg).__name__


class Preset(Compose):
    """A named composite: fixed member types, default arguments, and a class
    that the registry lists like any scheme (``pos_embed=dict(type='BEiTPE')``).

    A member's arguments are overridden under its type name, e.g.
    ``dict(type='BEiTPE', RelPosBias=dict(table_grid=(27, 27)))`` (on the
    command line: ``--cfg-options model.backbone.pos_embed.RelPosBias.table_grid="(27,27)"``).
    Subclasses set ``MEMBERS`` (the types, in order) and ``DEFAULTS`` (arguments
    per type), or :meth:`defaults` where they depend on the model context.
    """
    MEMBERS: ClassVar[Tuple[str, ...]] = ()
    DEFAULTS: ClassVar[Dict[str, dict]] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        types = [POS_ENCODINGS.module_dict[t] for t in cls.MEMBERS]
        cls.acts_at_final_norm = any(t.acts_at_final_norm for t in types)
        cls.supports_class_token = all(t.supports_class_token for t in types)

    @classmethod
    def defaults(cls, context: dict) -> Dict[str, dict]:
        """Default arguments per member type for this model context."""
        return cls.DEFAULTS

    def __init__(self, **kwargs) -> None:
        name = type(self).__name__
        unknown = sorted(set(kwargs) - CONTEXT_ARGS - set(self.MEMBERS))
        if unknown:
            raise TypeError(f'{name}: unknown argument(s) {unknown}; a preset takes its '
                            f'members\' arguments under their type names {list(self.MEMBERS)}, '
                            f'e.g. {self.MEMBERS[-1]}=dict(...)')
        overrides = {t: kwargs.pop(t) for t in self.MEMBERS if t in kwargs}
        bad = {t: v for t, v in overrides.items() if not isinstance(v, dict)}
        if bad:
            raise TypeError(f'{name}: member arguments must be dicts, got {bad!r}')
        defaults = self.defaults(kwargs)
        super().__init__([dict(type=t, **{**defaults.get(t, {}), **overrides.get(t, {})})
                          for t in self.MEMBERS], **kwargs)
