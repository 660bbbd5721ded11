"""Pictures of what a PE scheme learned, for whichever applies:

* absolute tables: cosine-similarity maps of a few positions' PE with every
  other position (ViT paper, Fig. 7) -> pe_similarity.png / .csv
* SP-SA: each head's prior over relative offsets (SP-ViT, Fig. 1b), and
  relative position bias: each head's table -> relative_maps.png / .csv
* RoPE: frequencies per block and head (magnitude and direction) -> rope_freqs.png / .csv

    python tools/analysis/pe_maps.py CONFIG [--checkpoint CKPT] [--grid 14]
"""
import math

import matplotlib.pyplot as plt
from common import load_backbone, output, parser, save_figure
from mmengine.utils import track_iter_progress

import mmvitpe  # noqa: F401
from mmvitpe.analysis import (absolute_table, cosine_similarity_maps, relative_maps,
                              rope_frequency_rows)
from mmvitpe.utils.tables import write_csv


def similarity(model, args) -> None:
    grid = (args.grid, args.grid)
    table = absolute_table(model, grid)
    if not table.abs().sum():
        return
    g = args.grid
    positions = [(0, 0), (0, g - 1), (g // 2, g // 2), (g - 1, 0), (g - 1, g - 1), (g // 4, g // 2)]
    maps = cosine_similarity_maps(table, grid, positions)
    fig, axes = plt.subplots(1, len(positions), figsize=(2.2 * len(positions), 2.4))
    rows = []
    for ax, (r, c), m in zip(axes, positions, maps):
        ax.imshow(m.numpy(), cmap='viridis', vmin=-1, vmax=1)
        ax.plot(c, r, 'r+')
        ax.set_title(f'({r},{c})', fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        rows += [dict(row=r, col=c, other_row=i // g, other_col=i % g, cosine=float(v))
                 for i, v in enumerate(m.flatten())]
    fig.suptitle(f'{type(model.pe).__name__}: cosine similarity of position embeddings')
    fig.tight_layout()
    save_figure(fig, output(args, 'pe_similarity.png'), dpi=100)
    write_csv(rows, output(args, 'pe_similarity.csv'))


def relative(model, args) -> None:
    maps = relative_maps(model, (args.grid, args.grid))
    if not maps:
        return
    heads = next(iter(maps.values())).shape[0]
    fig, axes = plt.subplots(len(maps), heads, figsize=(2 * heads, 2 * len(maps)), squeeze=False)
    rows = []
    for i, (block, m) in enumerate(track_iter_progress(list(maps.items()))):
        h, w = m.shape[1:]
        for head in range(heads):
            axes[i, head].imshow(m[head].numpy(), cmap='coolwarm')
            axes[i, head].set_title(f'{block} head {head}', fontsize=7)
            axes[i, head].set_xticks([]), axes[i, head].set_yticks([])
            rows += [dict(block=block, head=head, dy=y - h // 2, dx=x - w // 2,
                          value=float(m[head, y, x])) for y in range(h) for x in range(w)]
    fig.suptitle(f'{type(model.pe).__name__} over relative offsets (centre = 0)')
    fig.tight_layout()
    save_figure(fig, output(args, 'relative_maps.png'), dpi=100)
    write_csv(rows, output(args, 'relative_maps.csv'))


def rope(model, args) -> None:
    rows = rope_frequency_rows(model)
    if not rows:
        return
    write_csv(rows, output(args, 'rope_freqs.csv'))
    fig, ax = plt.subplots(subplot_kw=dict(projection='polar'), figsize=(4.5, 4.5))
    ax.scatter([math.radians(r['angle_deg']) for r in rows], [r['magnitude'] for r in rows],
               c=[r['block'] for r in rows], s=8, cmap='viridis')
    ax.set_title(f'{type(model.pe).__name__}: (fx, fy) per block/head/pair (colour = block)',
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, output(args, 'rope_freqs.png'), dpi=100)


def main() -> None:
    p = parser(__doc__)
    p.add_argument('--grid', type=int, default=14, help='grid side for the maps')
    args = p.parse_args()
    model = load_backbone(args.config, args.checkpoint, args.cfg_options)
    for tool in (similarity, relative, rope):
        tool(model, args)
    print(f'wrote the applicable maps for {type(model.pe).__name__} to {args.out}')


if __name__ == '__main__':
    main()
