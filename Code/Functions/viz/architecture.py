"""Teaching figures about network architecture, drawn from the model itself.

* :func:`architecture_blocks` walks a functional Keras model's graph and cuts
  its main path (the longest chain of layers from input to output) into
  blocks wherever the spatial resolution changes.  Blocks before the lowest
  resolution are the *encoder*, the lowest is the *bottleneck*, the rest the
  *decoder*.  Every ``Concatenate`` / ``Add`` that receives a tensor from a
  block at least two blocks earlier is a *skip connection*.
* :func:`plot_architecture` draws those blocks as a U with their output
  shapes and the skip arrows.
* :func:`plot_parameter_shares` draws the parameters of each block as bars.
* :func:`receptive_fields` / :func:`plot_receptive_field` compute, from the
  kernel sizes, strides and dilations on the encoder path, how many input
  pixels one feature of each block sees, and draw it over an image.
* :func:`transposed_conv_stamps` / :func:`plot_transposed_convolution` show
  a transposed convolution as one copy of the kernel "stamped" per input
  pixel, scaled by that pixel and shifted by ``stride``.
* :func:`plot_feature_maps` shows the channels of one layer's output.

Everything here reads the model; nothing is trained or changed.  Keras and
matplotlib are imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from Functions.viz.plotting import display_image


def _pyplot():
    """matplotlib.pyplot, with the non-interactive Agg backend unless a notebook chose one."""
    import os

    import matplotlib

    if "ipykernel" not in os.environ.get("MPLBACKEND", "") and matplotlib.get_backend().lower() not in (
            "module://matplotlib_inline.backend_inline", "inline", "nbagg", "widget"):
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


@dataclass
class Block:
    """One stage of a network's main path (see :func:`architecture_blocks`)."""

    name: str                      # first word of its first main-path layer with weights: "enc1", "bridge", "dec0"
    role: str                      # "encoder", "bottleneck" or "decoder"
    shape: tuple                   # output shape of the block's last main-path layer, without the batch axis
    layers: list = field(default_factory=list)   # names of the layers in the block (main path and side branches)
    params: int = 0                # parameters of those layers


@dataclass
class Skip:
    """A skip connection from block ``source`` to block ``target`` (indices into the block list)."""

    source: int
    target: int
    kind: str                      # "concat" or "add"


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _graph(model):
    """``(order, parents, children)``: layers in topological order and their neighbours (by name)."""
    producer = {}
    for layer in model.layers:
        for t in _as_list(layer.output):
            producer[id(t)] = layer.name
    parents, children = {}, {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        try:
            inputs = _as_list(layer.input)
        except (AttributeError, ValueError):
            inputs = []
        parents[layer.name] = [producer[id(t)] for t in inputs if id(t) in producer and producer[id(t)] != layer.name]
        for p in parents[layer.name]:
            children[p].append(layer.name)
    order, seen = [], set()

    def visit(name):  # iterative DFS post-order = topological order
        stack = [(name, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if node in seen:
                continue
            seen.add(node)
            stack.append((node, True))
            stack.extend((p, False) for p in reversed(parents[node]) if p not in seen)

    for layer in model.layers:
        visit(layer.name)
    return order, parents, children


def _spatial(shape) -> tuple | None:
    """``(H, W)`` (or ``(D, H, W)``) of an ``(N, H, W, C)`` shape with more than one pixel, else ``None``."""
    if shape is None or len(shape) < 4 or any(d is None for d in shape[1:-1]):
        return None
    dims = tuple(int(d) for d in shape[1:-1])
    return None if int(np.prod(dims)) <= 1 else dims


def _width(layer) -> tuple:
    """``(pixels, channels)`` of a layer's output, to tell a gated tensor from its (narrower) gate."""
    shape = _as_list(layer.output)[0].shape
    dims = [d or 1 for d in shape[1:]]
    return (int(np.prod(dims[:-1])) if len(dims) > 1 else 1, int(dims[-1]) if dims else 1)


def _main_path(model, order, parents) -> list[str]:
    by_name = {layer.name: layer for layer in model.layers}
    last = _as_list(model.outputs)[-1]
    end = next(layer.name for layer in model.layers if any(t is last for t in _as_list(layer.output)))
    length, best = {}, {}
    for name in order:
        ps = parents[name]
        if ps and type(by_name[name]).__name__ == "Multiply":
            # a gate (attention coefficients, squeeze-and-excitation) scales the main tensor: follow the tensor
            widest = max(_width(by_name[p]) for p in ps)
            ps = [p for p in ps if _width(by_name[p]) == widest]
        if ps:
            best[name] = max(ps, key=lambda p: length[p])
            length[name] = length[best[name]] + 1
        else:
            length[name] = 0
    path = [end]
    while path[-1] in best:
        path.append(best[path[-1]])
    path = path[::-1]
    return [n for n in path if type(by_name[n]).__name__ != "InputLayer"]


def architecture_blocks(model) -> tuple[list[Block], list[Skip]]:
    """Cut a functional model into encoder / bottleneck / decoder blocks and find its skip connections.

    Args:
        model: a functional ``keras.Model`` with ``(N, H, W, C)`` feature maps (the models of
            :func:`Functions.models.build_model`).  A nested sub-model (the pretrained backbones of
            ``unet_resnet50`` and co.) is one layer and is not opened, so those encoders show as one block.

    Returns:
        ``(blocks, skips)``.  ``blocks[i].shape`` is ``(H, W, C)``; every layer of the model belongs to
        exactly one block, so ``sum(b.params for b in blocks) == model.count_params()``.  ``skips`` lists
        the connections that jump at least one block (for a U-Net of depth ``d``: ``d`` concatenations).
    """
    by_name = {layer.name: layer for layer in model.layers}
    order, parents, children = _graph(model)
    path = _main_path(model, order, parents)
    if not path:
        raise ValueError("architecture_blocks: the model has no layers between its input and output")
    # 1. cut the main path where the resolution changes (layers without a spatial map stay in the current block)
    groups, sizes = [[]], [None]
    for name in path:
        size = _spatial(by_name[name].output.shape)
        if size is not None and sizes[-1] is not None and size != sizes[-1]:
            groups.append([])
            sizes.append(None)
        groups[-1].append(name)
        if size is not None:
            sizes[-1] = size
    block_of = {n: i for i, g in enumerate(groups) for n in g}
    # 2. side branches: a layer off the main path joins the block of the first main-path layer it feeds
    members = [list(g) for g in groups]
    for name in reversed(order):
        if name in block_of or type(by_name[name]).__name__ == "InputLayer":
            continue
        targets = [block_of[c] for c in children[name] if c in block_of]
        if not targets:  # e.g. a deep-supervision head: it joins the block it reads from
            targets = [block_of[p] for p in parents[name] if p in block_of] or [len(groups) - 1]
        block_of[name] = min(targets)
        members[block_of[name]].append(name)
    # 3. roles by resolution
    areas = [float(np.prod(s)) if s else np.inf for s in sizes]
    low = int(np.argmin(areas))
    blocks = []
    for i, g in enumerate(groups):
        role = "encoder" if i < low else ("bottleneck" if i == low else "decoder")
        weighted = [n for n in g if by_name[n].count_params()] or g
        name = weighted[0].split("_")[0]
        shape = tuple(int(d) if d is not None else None for d in by_name[g[-1]].output.shape[1:])
        params = int(sum(by_name[n].count_params() for n in members[i]))
        blocks.append(Block(name=name, role=role, shape=shape, layers=members[i], params=params))
    # 4. skips: inputs of a merge on the main path that come (through side branches) from an earlier block
    skips = []
    for name in path:
        kind = {"Concatenate": "concat", "Add": "add"}.get(type(by_name[name]).__name__)
        if kind is None:
            continue
        target = block_of[name]
        sources, frontier, seen = set(), list(parents[name]), set()
        while frontier:
            p = frontier.pop()
            if p in seen or type(by_name[p]).__name__ == "InputLayer":
                continue
            seen.add(p)
            if p in path:
                sources.add(block_of[p])
            else:
                frontier.extend(parents[p])
        for s in sorted(sources):
            if target - s >= 2 and not any(k.source == s and k.target == target for k in skips):
                skips.append(Skip(source=s, target=target, kind=kind))
    return blocks, skips


_ROLE_COLORS = {"encoder": "#9ecae1", "bottleneck": "#fc9272", "decoder": "#a1d99b"}


def plot_architecture(model, *, title: str | None = None, path=None):
    """A diagram of ``model`` drawn from its graph: blocks in a U, output shapes, skip arrows.

    Args:
        model: a functional ``keras.Model`` (see :func:`architecture_blocks`).
        title: figure title (default: the model's name and parameter count).
        path: where to save the figure (optional).

    Returns:
        A figure with one axes: one box per block (name, ``H×W×C``, parameters), placed lower the
        coarser its resolution, solid arrows along the main path and dashed arrows for skips.
    """
    plt = _pyplot()
    blocks, skips = architecture_blocks(model)
    areas = [float(np.prod([d or 1 for d in b.shape[:-1]])) for b in blocks]
    levels = [np.log2(max(areas) / max(a, 1.0)) / max(len(b.shape) - 1, 1) for a, b in zip(areas, blocks)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(blocks)), 1.3 * (max(levels) + 2)))
    w, h = 1.15, 0.62
    centres = [(1.45 * i, -1.1 * lvl) for i, lvl in enumerate(levels)]
    for b, (x, y) in zip(blocks, centres):
        ax.add_patch(plt.Rectangle((x - w / 2, y - h / 2), w, h, facecolor=_ROLE_COLORS[b.role],
                                   edgecolor="black", linewidth=0.8))
        dims = "×".join("?" if d is None else str(d) for d in b.shape)
        ax.text(x, y + 0.12, b.name, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(x, y - 0.1, dims, ha="center", va="center", fontsize=8)
        ax.text(x, y - 0.24, f"{b.params:,} p", ha="center", va="center", fontsize=7, color="0.3")
    for i in range(len(blocks) - 1):
        (x0, y0), (x1, y1) = centres[i], centres[i + 1]
        ax.annotate("", xy=(x1 - w / 2, y1), xytext=(x0 + w / 2, y0),
                    arrowprops=dict(arrowstyle="->", color="black", lw=1.0))
    for k in skips:
        (x0, y0), (x1, y1) = centres[k.source], centres[k.target]
        ax.annotate("", xy=(x1, y1 + h / 2), xytext=(x0, y0 + h / 2),
                    arrowprops=dict(arrowstyle="->", color="tab:purple", lw=1.0, linestyle="--",
                                    connectionstyle="arc3,rad=-0.25"))
        ax.text((x0 + x1) / 2, max(y0, y1) + h / 2 + 0.08 + 0.06 * (x1 - x0), k.kind, ha="center",
                fontsize=7, color="tab:purple")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="black") for c in _ROLE_COLORS.values()]
    ax.legend(handles, list(_ROLE_COLORS), loc="lower right", fontsize=8, frameon=False)
    xs, ys = [c[0] for c in centres], [c[1] for c in centres]
    ax.set_xlim(min(xs) - w, max(xs) + w)
    ax.set_ylim(min(ys) - h, max(ys) + h + 0.5 + 0.06 * (max(xs) - min(xs)))
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title or f"{model.name}: {model.count_params():,} parameters, {len(skips)} skip connection(s)")
    fig.tight_layout()
    return _save(fig, path)


def plot_parameter_shares(model, *, path=None):
    """Bars: the parameters of each block of ``model`` (see :func:`architecture_blocks`), coloured by role.

    Returns:
        A figure with one axes holding one bar per block (height = parameters, label = share in %).
    """
    plt = _pyplot()
    blocks, _ = architecture_blocks(model)
    total = max(sum(b.params for b in blocks), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.75 * len(blocks)), 3.2))
    bars = ax.bar(range(len(blocks)), [b.params for b in blocks],
                  color=[_ROLE_COLORS[b.role] for b in blocks], edgecolor="black", linewidth=0.6)
    for bar, b in zip(bars, blocks):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{100 * b.params / total:.0f}%",
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(blocks)), [b.name for b in blocks], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("parameters")
    ax.set_title(f"{model.name}: where the {total:,} parameters are")
    fig.tight_layout()
    return _save(fig, path)


def receptive_fields(model) -> list[tuple[str, int]]:
    """Receptive field (in input pixels, one side) of the output of each encoder block and the bottleneck.

    Computed along the main path with the usual recursion: each layer with kernel ``k``, stride ``s``
    and dilation ``d`` turns ``(r, j)`` into ``(r + (k - 1) * d * j, j * s)``, starting from
    ``(1, 1)``; ``j`` is the distance in input pixels between neighbouring features.

    Returns:
        ``[(block name, r), ...]`` for the encoder blocks and the bottleneck, in order.
        A U-Net of depth 2 with two 3×3 convolutions per level and 2×2 pooling gives
        ``[("enc0", 5), ("enc1", 14), ("bridge", 32)]``.
    """
    by_name = {layer.name: layer for layer in model.layers}
    blocks, _ = architecture_blocks(model)
    order, parents, _ = _graph(model)
    on_path = set(_main_path(model, order, parents))
    r, j, out = 1, 1, []
    for b in blocks:
        if b.role == "decoder":
            break
        for name in b.layers:
            layer = by_name[name]
            if name not in on_path:
                continue
            k = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
            if k is None:
                continue
            s = _first(getattr(layer, "strides", 1) or 1)
            d = _first(getattr(layer, "dilation_rate", 1) or 1)
            r, j = r + (_first(k) - 1) * d * j, j * s
        out.append((b.name, int(r)))
    return out


def _first(v) -> int:
    return int(v[0]) if isinstance(v, (list, tuple)) else int(v)


def plot_receptive_field(image: np.ndarray, model, *, centre: tuple[int, int] | None = None, path=None):
    """The receptive field of each encoder block and the bottleneck as nested squares over ``image``.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, at the size the model takes.
        model: see :func:`receptive_fields`.
        centre: ``(row, col)`` of the feature whose field is drawn (default: the image centre).

    Returns:
        A figure: the image with one coloured square per block (squares larger than the image are clipped,
        which is itself the lesson: the deepest features see the whole image).
    """
    plt = _pyplot()
    img = display_image(image)
    hgt, wid = img.shape[:2]
    cy, cx = centre if centre is not None else (hgt // 2, wid // 2)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    colours = plt.get_cmap("viridis")
    fields = receptive_fields(model)
    for i, (name, r) in enumerate(fields):
        colour = colours(i / max(len(fields) - 1, 1))
        ax.add_patch(plt.Rectangle((cx - r / 2, cy - r / 2), r, r, fill=False, edgecolor=colour, linewidth=1.6,
                                   label=f"{name}: {r}×{r} px"))
    ax.plot([cx], [cy], "r+", markersize=8)
    ax.set_xlim(-0.5, wid - 0.5)
    ax.set_ylim(hgt - 0.5, -0.5)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    ax.set_axis_off()
    ax.set_title("what one feature of each block sees")
    fig.tight_layout()
    return _save(fig, path)


def transposed_conv_stamps(x: np.ndarray, kernel: np.ndarray, stride: int = 2,
                           padding: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D single-channel transposed convolution computed as stamped kernels.

    Every input pixel ``x[i, j]`` adds ``x[i, j] * kernel`` to the output at rows
    ``i*stride .. i*stride+k-1`` and columns ``j*stride .. j*stride+k-1``; ``padding`` then crops that
    many pixels from each border, so the output side is ``o = (i - 1) * s - 2 * p + k``.

    Args:
        x: ``(h, w)`` input.
        kernel: ``(k, k)`` kernel.
        stride, padding: non-negative integers (``stride >= 1``).

    Returns:
        ``(stamps, output)``: ``stamps`` is ``(h, w, H, W)`` (one full-size canvas per input pixel, before
        cropping) and ``output`` is ``(H - 2p, W - 2p)``, the sum of the stamps cropped by ``padding``.
        With ``padding=0`` this equals ``keras.layers.Conv2DTranspose(1, k, strides=stride,
        padding="valid", use_bias=False)`` with that kernel.
    """
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    if x.ndim != 2 or kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"transposed_conv_stamps: x must be (h, w) and kernel (k, k), got {x.shape}, {kernel.shape}")
    if int(stride) < 1 or int(padding) < 0:
        raise ValueError(f"transposed_conv_stamps: stride={stride} must be >= 1 and padding={padding} >= 0")
    h, w = x.shape
    k = kernel.shape[0]
    big_h, big_w = (h - 1) * stride + k, (w - 1) * stride + k
    if big_h - 2 * padding < 1 or big_w - 2 * padding < 1:
        raise ValueError(f"transposed_conv_stamps: padding={padding} leaves no output for a {h}x{w} input")
    stamps = np.zeros((h, w, big_h, big_w))
    for i in range(h):
        for j in range(w):
            stamps[i, j, i * stride:i * stride + k, j * stride:j * stride + k] = x[i, j] * kernel
    out = stamps.sum(axis=(0, 1))
    if padding:
        out = out[padding:-padding, padding:-padding]
    return stamps, out


def plot_transposed_convolution(x: np.ndarray, kernel: np.ndarray, stride: int = 2, padding: int = 0, path=None):
    """Input, kernel, one panel per stamped copy of the kernel, and their sum (the output).

    Shapes as in :func:`transposed_conv_stamps`; every number is written in its cell.  Keep ``x`` small
    (2×2 or 3×3) so the panels stay readable.

    Returns:
        A figure with ``h * w + 3`` panels.
    """
    plt = _pyplot()
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    stamps, out = transposed_conv_stamps(x, kernel, stride, padding)
    panels = [("input", x), ("kernel", kernel)]
    panels += [(f"x[{i},{j}] · kernel", stamps[i, j]) for i in range(x.shape[0]) for j in range(x.shape[1])]
    k = kernel.shape[0]
    panels.append((f"output {out.shape[0]}×{out.shape[1]}\n(i-1)s-2p+k = ({x.shape[0]}-1)·{stride}-2·{padding}+{k}",
                   out))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.0 * len(panels), 2.4))
    vmax = max(float(np.abs(a).max()) for _, a in panels) or 1.0
    for ax, (head, a) in zip(np.atleast_1d(axes), panels):
        ax.imshow(a, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        if a.size <= 64:
            for (r, c), v in np.ndenumerate(a):
                if v:
                    ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=7)
        ax.set_title(head, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)


def plot_feature_maps(model, image: np.ndarray, layer: str, *, n: int = 8, ncols: int = 8, path=None):
    """The first ``n`` channels of ``layer``'s output for one image: what a *feature map* is.

    Args:
        model: a functional ``keras.Model``.
        image: ``(H, W, C)`` input, already preprocessed as the model expects.
        layer: the name of a layer with a 4-D output.
        n: how many channels to draw (at most the layer's channel count).

    Returns:
        A figure: the input, then one grey panel per channel titled with its index; each panel is
        scaled to its own range.
    """
    import keras

    plt = _pyplot()
    try:
        target = model.get_layer(layer)
    except ValueError:
        raise ValueError(f"plot_feature_maps: no layer {layer!r} in {model.name}; "
                         f"choose one of {', '.join(l.name for l in model.layers[:8])}, ...") from None
    probe = keras.Model(model.input, target.output)
    maps = np.asarray(keras.ops.convert_to_numpy(probe(np.asarray(image, np.float32)[None], training=False)))[0]
    n = int(min(n, maps.shape[-1]))
    cols = max(1, min(int(ncols), n + 1))
    rows = -(-(n + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.8 * rows), squeeze=False)
    panels = [("input", display_image(image))] + [(f"channel {c}", maps[..., c]) for c in range(n)]
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (head, a) in zip(axes.ravel(), panels):
        ax.imshow(a, cmap="gray" if a.ndim == 2 else None)
        ax.set_title(head, fontsize=8)
    fig.suptitle(f"{layer}: output {maps.shape[0]}×{maps.shape[1]}×{maps.shape[2]}, {n} channels shown", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
