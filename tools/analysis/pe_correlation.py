"""Per-layer correlation between token embeddings and PE after their norms
(MPVG paper, Fig. 4), and heat maps of both per layer (Fig. 2).

    python tools/analysis/pe_correlation.py CONFIG [--checkpoint CKPT] [--images DIR]

Writes <out>/pe_correlation.csv (layer, correlation), pe_correlation.png and
pe_heatmaps.png. The PE of a layer is what the scheme adds to that layer's
normalised tokens (LaPE/PVG/MPVG), or the input PE for schemes that act once.
"""
import matplotlib.pyplot as plt
from common import load_backbone, load_images, output, parser, save_figure
from mmengine.utils import track_iter_progress

import mmvitpe  # noqa: F401
from mmvitpe.analysis import correlation_rows, token_and_pe_per_layer
from mmvitpe.utils.tables import write_csv


def main() -> None:
    args = parser(__doc__).parse_args()
    model = load_backbone(args.config, args.checkpoint, args.cfg_options)
    layers = token_and_pe_per_layer(model, load_images(args, args.size))
    rows = correlation_rows(layers)
    write_csv(rows, output(args, 'pe_correlation.csv'))
    scheme = type(model.pe).__name__
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r['layer'] for r in rows], [r['correlation'] for r in rows], marker='o')
    ax.set(title=f'{scheme}: corr(token embedding, PE) per layer', xlabel='layer',
           ylabel='Pearson correlation')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, output(args, 'pe_correlation.png'), dpi=100)

    fig, axes = plt.subplots(2, len(layers), figsize=(1.6 * len(layers), 4), squeeze=False)
    for i, layer in enumerate(track_iter_progress(layers)):
        axes[0, i].imshow(layer['tokens'].abs().numpy(), aspect='auto', cmap='viridis')
        axes[0, i].set_title(f'L{i} tokens', fontsize=7)
        if layer['pe'] is not None:
            axes[1, i].imshow(layer['pe'].abs().numpy(), aspect='auto', cmap='magma')
        axes[1, i].set_title(f'L{i} PE', fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f'{scheme}: |token embedding| and |PE| (tokens x channels)')
    fig.tight_layout()
    save_figure(fig, output(args, 'pe_heatmaps.png'), dpi=60)
    for r in rows:
        print(f"layer {r['layer']:2d}: correlation {r['correlation']:.3f}")


if __name__ == '__main__':
    main()
