"""Write the built-in demo data: a tiny, deterministic dataset in real COCO
instance format and in real ADE20K layout, from the same synthetic scenes.

Each scene is a textured background with 1-2 large textured shapes (square,
circle, triangle) of random size and position that do not overlap; each class
has its own hue (reddish squares, bluish circles, greenish triangles, jittered)
so that a model trained from scratch for a few CPU minutes can learn it. Written as:

    <out>/coco/{train,val}/<id>.jpg
    <out>/coco/annotations/instances_{train,val}.json   (polygons, bbox, area)
    <out>/ade/images/{training,validation}/<id>.jpg
    <out>/ade/annotations/{training,validation}/<id>.png
        ADE20K convention: 0 = ignore (a 1-pixel band on shape borders),
        1 = background, 2.. = square, circle, triangle (reduce_zero_label=True)

A second set, for comparing positional encodings, has classes that only
position decides: every shape (any kind, any colour) is "left" or "right" by
the half of the image it lies in, so a model that cannot tell where a patch
is cannot tell the classes apart:

    <out>/position/images/{training,validation}/<id>.jpg
    <out>/position/annotations/{training,validation}/<id>.png
        0 = ignore (shape borders), 1 = background, 2 = left, 3 = right

Usage: python tools/make_demo_data.py [--out data/demo] [--train 128] [--val 48] [--size 160]
    [--position-train 64] [--position-val 32] [--position-size 64]
The same arguments always give byte-identical files.
"""
import argparse
import json
import math
import os

import cv2
import numpy as np

CLASSES = ('square', 'circle', 'triangle')
CLASS_COLOURS = np.array([(220, 60, 60), (60, 110, 230), (70, 200, 80)], dtype=float)
SEG_CLASSES = ('background', ) + CLASSES
POSITION_CLASSES = ('background', 'left', 'right')
# bump when the scenes change: tools/run_demo.py rewrites data of another version
DATA_VERSION = 4


def shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices (k, 2) in (x, y) of a shape with circumradius r."""
    count = {'square': 4, 'circle': 32, 'triangle': 3}[kind]
    t = angle + np.arange(count) * 2 * math.pi / count
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted, noisy RGB gradient (float, size x size x 3)."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.uniform(60, 160, 3) * np.array([0.7, 0.7, 0.7]) + 30
    gradient = (xx * rng.uniform(-0.3, 0.3) + yy * rng.uniform(-0.3, 0.3))[..., None]
    return base + gradient + rng.normal(0, 12, (size, size, 3))


def ignore_borders(labels: np.ndarray) -> None:
    """Label shape borders 0 = ignore, as ADE20K's unlabeled pixels."""
    border = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    labels[border] = 0


def make_scene(rng: np.random.Generator, size: int):
    """An RGB image, its objects [(class index, mask)] and a label map.

    One or two shapes of circumradius 0.18-0.3 x size that do not touch
    (a second shape that finds no free place in 20 tries is left out), so
    every object is whole and large against the anchors and RoIs of Mask R-CNN.
    """
    xx = np.mgrid[0:size, 0:size][1]
    img = background(rng, size)
    labels = np.ones((size, size), np.uint8)  # 1 = background
    objects, placed = [], []
    for _ in range(rng.integers(1, 3)):
        cls = int(rng.integers(len(CLASSES)))
        r = rng.uniform(0.18, 0.3) * size
        for _ in range(20):
            cx, cy = rng.uniform(r, size - r, 2)
            if all(math.hypot(cx - x, cy - y) > r + q + 2 for x, y, q in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        poly = shape_polygon(CLASSES[cls], cx, cy, r, rng.uniform(0, 2 * math.pi))
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        colour = CLASS_COLOURS[cls] + rng.uniform(-35, 35, 3)
        stripes = 25 * np.sin(xx / rng.uniform(2, 6))[..., None]
        texture = rng.normal(0, 20, (size, size, 3)) + stripes
        img = np.where(mask[..., None] == 1, colour + texture, img)
        labels[mask == 1] = 2 + cls
        objects.append((cls, mask))
    ignore_borders(labels)
    return np.clip(img, 0, 255).astype(np.uint8), objects, labels


def make_position_scene(rng: np.random.Generator, size: int):
    """An RGB image and its label map: shapes classed by the half they lie in.

    Each half holds one shape with probability 0.7 (at least one per scene),
    of random kind, colour, size and angle, kept 2 pixels off the midline so
    its class is never ambiguous.
    """
    img = background(rng, size)
    labels = np.ones((size, size), np.uint8)
    halves = rng.random(2) < 0.7
    if not halves.any():
        halves[rng.integers(2)] = True
    for half in np.flatnonzero(halves):
        r = rng.uniform(0.12, 0.2) * size
        low = half * size / 2 + (r + 2 if half else r)
        high = (half + 1) * size / 2 - (r if half else r + 2)
        cx, cy = rng.uniform(low, high), rng.uniform(r, size - r)
        kind = CLASSES[rng.integers(len(CLASSES))]
        poly = shape_polygon(kind, cx, cy, r, rng.uniform(0, 2 * math.pi))
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        img = np.where(mask[..., None] == 1, rng.uniform(30, 230, 3), img)
        labels[mask == 1] = 2 + half
    ignore_borders(labels)
    return np.clip(img, 0, 255).astype(np.uint8), labels


def mask_polygons(mask: np.ndarray) -> list:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def write_split(out: str, coco_split: str, ade_split: str, count: int, size: int,
                seed: int) -> None:
    rng = np.random.default_rng(seed)
    for d in (f'coco/{coco_split}', 'coco/annotations', f'ade/images/{ade_split}',
              f'ade/annotations/{ade_split}'):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        img, objects, labels = make_scene(rng, size)
        name = f'{i:05d}'
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        cv2.imwrite(os.path.join(out, 'coco', coco_split, name + '.jpg'), bgr,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(os.path.join(out, 'ade/images', ade_split, name + '.jpg'), bgr,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(os.path.join(out, 'ade/annotations', ade_split, name + '.png'), labels)
        images.append(dict(id=i, file_name=name + '.jpg', height=size, width=size))
        for cls, mask in objects:
            polygons = mask_polygons(mask)
            if not polygons or mask.sum() < 16:
                continue
            x, y, w, h = cv2.boundingRect(mask)
            annotations.append(dict(id=len(annotations) + 1, image_id=i, category_id=cls + 1,
                                    segmentation=polygons, area=float(mask.sum()),
                                    bbox=[float(x), float(y), float(w), float(h)], iscrowd=0))
    coco = dict(images=images, annotations=annotations,
                categories=[dict(id=k + 1, name=n) for k, n in enumerate(CLASSES)])
    with open(os.path.join(out, 'coco/annotations', f'instances_{coco_split}.json'), 'w') as f:
        json.dump(coco, f)


def write_position_split(out: str, split: str, count: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for d in (f'position/images/{split}', f'position/annotations/{split}'):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    for i in range(count):
        img, labels = make_position_scene(rng, size)
        name = f'{i:05d}'
        cv2.imwrite(os.path.join(out, 'position/images', split, name + '.jpg'),
                    cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(os.path.join(out, 'position/annotations', split, name + '.png'), labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/demo')
    # 128: the demo Mask R-CNN's bbox mAP@0.5 was 0.335 after 320 steps, 0.301 with 64
    # scenes seen twice as often (both pooling RoIs from P2)
    parser.add_argument('--train', type=int, default=128)
    # 48: over 16 scenes (~20 objects) bbox AP moved by up to 0.1 between neighbouring epochs
    parser.add_argument('--val', type=int, default=48)
    parser.add_argument('--size', type=int, default=160)
    parser.add_argument('--position-train', type=int, default=64)
    parser.add_argument('--position-val', type=int, default=32)
    parser.add_argument('--position-size', type=int, default=64)
    args = parser.parse_args()
    write_split(args.out, 'train', 'training', args.train, args.size, seed=0)
    write_split(args.out, 'val', 'validation', args.val, args.size, seed=1)
    write_position_split(args.out, 'training', args.position_train, args.position_size, seed=2)
    write_position_split(args.out, 'validation', args.position_val, args.position_size, seed=3)
    with open(os.path.join(args.out, 'demo_data.json'), 'w') as f:
        json.dump(dict(version=DATA_VERSION, **vars(args)), f)
    print(f'demo data written to {args.out}: {args.train} train / {args.val} val images '
          f'of {args.size}x{args.size}; position set {args.position_train} / '
          f'{args.position_val} of {args.position_size}x{args.position_size}')


if __name__ == '__main__':
    main()
