"""Batched training augmentations that model the catalog-to-street domain gap, on any device.

A catalog photo shows the product centred on a plain light background; a customer's photo shows it
smaller, rotated and in perspective, on a cluttered background, under other light, blurred, noisy
and partly hidden. ``augment`` turns a batch of catalog images into such views with generic image
operations (nothing here knows how any particular street photo was made):

* **foreground mask** (``foreground_mask``, computed once per catalog image): the background is the
  region connected to the image border whose colour is close to the border's median colour (a flood
  fill by repeated 3x3 dilation), so light products with an outline keep their inside;
* **geometry**: a random perspective warp (homography: zoom out, rotation, shift, corner jitter) for
  street-style views, a random resized crop for the others;
* **background**: the warped product composited, through its warped mask, over a random cluttered
  texture (a colour gradient, low-frequency noise and random rectangles and ellipses);
* **occlusion** (random erasing): a random-coloured ellipse or box over part of the view;
* **light**: brightness, per-channel gain (colour cast), a linear illumination gradient, contrast
  and saturation;
* **blur** (Gaussian, per-view sigma) and **sensor noise** (Gaussian, per-view sigma).

Real street photos in the training set (``is_street``) get a mild crop / rotation / light jitter
only, and a ``clean_prob`` share of catalog views is left untouched: the gallery side of retrieval
is the clean catalog image, so training pairs "clean catalog" against "street-like" views.
All random draws come from one ``torch.Generator`` (on the CPU or on the images' device).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def foreground_mask(
    x: torch.Tensor, tol: float = 0.08, max_iters: int | None = None
) -> torch.Tensor:
    """Product masks of catalog images on a plain background.

    Background = pixels whose colour is within ``tol`` (max over channels, pixels in 0..1) of the
    median border colour and that are connected to the border through such pixels.

    Args:
        x: (n, 3, S, S) uint8 or float in [0, 1], any device.
        tol: colour tolerance of the background.
        max_iters: flood-fill dilation steps (default: until nothing changes, at most H + W).

    Returns:
        (n, 1, S, S) float32 in {0, 1}: 1 on the product.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"x: expected (n, 3, H, W) images, found shape {tuple(x.shape)}")
    xf = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    n, _, h, w = xf.shape
    if n == 0:
        return xf.new_zeros((0, 1, h, w))
    border = torch.cat(
        [xf[:, :, 0, :], xf[:, :, -1, :], xf[:, :, :, 0], xf[:, :, :, -1]], dim=2
    )  # (n, 3, 2(H+W))
    bg_colour = border.median(dim=2).values.view(n, 3, 1, 1)
    bg_like = ((xf - bg_colour).abs().amax(dim=1, keepdim=True) <= tol).float()  # (n, 1, H, W)
    seed = torch.zeros_like(bg_like)
    seed[:, :, 0, :] = seed[:, :, -1, :] = seed[:, :, :, 0] = seed[:, :, :, -1] = 1.0
    bg = seed * bg_like
    steps = max_iters if max_iters is not None else h + w
    for i in range(steps):
        grown = F.max_pool2d(bg, 3, 1, 1) * bg_like
        if max_iters is None and i % 8 == 7 and torch.equal(grown, bg):
            break
        bg = grown
    return 1.0 - bg


def _rand(gen: torch.Generator | None, dev: torch.device, *shape: int) -> torch.Tensor:
    """Uniform draws on ``dev``: straight from ``gen`` when it lives there (no host copies)."""
    if gen is not None and gen.device.type == dev.type:
        return torch.rand(*shape, generator=gen, device=dev)
    return torch.rand(*shape, generator=gen).to(dev)


def _randn(gen: torch.Generator | None, dev: torch.device, *shape: int) -> torch.Tensor:
    if gen is not None and gen.device.type == dev.type:
        return torch.randn(*shape, generator=gen, device=dev)
    return torch.randn(*shape, generator=gen).to(dev)


def homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Batched 3x3 homographies mapping the 4 points ``src`` (n, 4, 2) onto ``dst`` (n, 4, 2)."""
    n = src.shape[0]
    x, y = src[..., 0].double(), src[..., 1].double()
    u, v = dst[..., 0].double(), dst[..., 1].double()
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)  # (n, 4, 8)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)  # (n, 8, 8)
    b = torch.cat([u, v], 1)  # (n, 8)
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones(n, 1, dtype=h.dtype, device=h.device)], 1).view(n, 3, 3).float()


def _homography_grid(m: torch.Tensor, size: int) -> torch.Tensor:
    """Sampling grid (n, S, S, 2) of output->input maps ``m`` (n, 3, 3) in normalised coords."""
    dev = m.device
    lin = (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    base = torch.stack([xx, yy, torch.ones_like(xx)], dim=-1).view(1, -1, 3)  # (1, S*S, 3)
    pts = base @ m.transpose(1, 2)  # (n, S*S, 3)
    grid = pts[..., :2] / pts[..., 2:].clamp(min=1e-3)
    return grid.view(m.shape[0], size, size, 2)


def random_backgrounds(
    n: int, size: int, gen: torch.Generator | None = None, device="cpu", shapes: int = 14
) -> torch.Tensor:
    """Random cluttered textures: gradient + low-frequency noise + rectangles and ellipses.

    Returns:
        (n, 3, size, size) float32 in [0, 1].
    """
    dev = torch.device(device)
    lin = torch.linspace(0, 1, size, device=dev)
    yy, xx = lin.view(1, 1, size, 1), lin.view(1, 1, 1, size)
    base = 0.15 + 0.7 * _rand(gen, dev, n, 3, 1, 1)
    gy, gx = (_rand(gen, dev, n, 3, 1, 1) - 0.5) * 0.5, (_rand(gen, dev, n, 3, 1, 1) - 0.5) * 0.5
    bg = base + gy * (yy - 0.5) + gx * (xx - 0.5)
    for cells in (5, 16):  # two octaves of low-frequency colour noise
        noise = _rand(gen, dev, n, 3, cells, cells) - 0.5
        bg = bg + 0.25 * _rand(gen, dev, n, 1, 1, 1) * F.interpolate(
            noise, size=(size, size), mode="bilinear", align_corners=False
        )
    for _ in range(shapes):
        cx, cy = _rand(gen, dev, n, 1, 1, 1) * 1.2 - 0.1, _rand(gen, dev, n, 1, 1, 1) * 1.2 - 0.1
        rx, ry = (
            0.03 + 0.22 * _rand(gen, dev, n, 1, 1, 1),
            0.03 + 0.22 * _rand(gen, dev, n, 1, 1, 1),
        )
        colour = _rand(gen, dev, n, 3, 1, 1)
        ellipse = _rand(gen, dev, n, 1, 1, 1) < 0.5
        dx, dy = (xx - cx) / rx, (yy - cy) / ry
        inside = torch.where(
            ellipse, dx * dx + dy * dy <= 1.0, (dx.abs() <= 1.0) & (dy.abs() <= 1.0)
        )  # (n, 1, S, S)
        inside = inside & (_rand(gen, dev, n, 1, 1, 1) < 0.8)  # each shape on 80% of the views
        bg = torch.where(inside, colour, bg)
    return F.avg_pool2d(bg, 3, 1, 1, count_include_pad=False).clamp(0.0, 1.0)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur; x (n, C, H, W), sigma (n,) (0 = identity)."""
    n, c, h, w = x.shape
    radius = 3
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t.view(1, -1) / sigma.clamp(min=1e-3).view(-1, 1)) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # (n, 7)
    k = k.repeat_interleave(c, dim=0)  # (n*c, 7)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def augment(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    street_prob: float = 0.5,
    mask: torch.Tensor | None = None,
    is_street: torch.Tensor | None = None,
    clean_prob: float = 0.0,
) -> torch.Tensor:
    """Random training views of a batch of images (see the module docstring).

    Args:
        x: (n, 3, S, S) uint8 or float in [0, 1], any device.
        generator: generator for every random draw (CPU, or on x's device: no host copies).
        street_prob: share of catalog views made street-like (warped, composited on clutter,
            occluded, blurred, noised); the others get a random resized crop and light jitter.
        mask: (n, 1, S, S) product masks (``foreground_mask``); default: computed here.
        is_street: (n,) bool, True for real street photos (mild augmentation only).
        clean_prob: share of catalog views returned unchanged.

    Returns:
        (n, 3, S, S) float32 in [0, 1] on x's device.
    """
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise ValueError(f"x: expected (n, 3, S, S) images, found shape {tuple(x.shape)}")
    n, dev, s = x.shape[0], x.device, x.shape[-1]
    xf = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if n == 0:
        return xf
    real = (
        torch.zeros(n, dtype=torch.bool, device=dev)
        if is_street is None
        else is_street.to(dev).bool()
    )
    if mask is None:
        mask = foreground_mask(xf)
    mask = mask.to(dev).float()
    u = lambda *shape: _rand(generator, dev, *shape)  # noqa: E731
    street = (u(n) < street_prob) & ~real
    clean = (u(n) < clean_prob) & ~real

    # geometry: where the image's corners land in the view (scale, rotation, shift, per-corner
    # jitter: a random perspective), solved for the view -> image homography
    sel = lambda c, a, b: torch.where(c, torch.as_tensor(a, device=dev), b)  # noqa: E731
    area = sel(real, 0.75 + 0.25 * u(n), 0.55 + 0.45 * u(n))
    ratio = torch.exp((u(n) * 2 - 1) * math.log(4 / 3))
    scale_x, scale_y = 1 / torch.sqrt(area * ratio), 1 / torch.sqrt(area / ratio)
    scale_x, scale_y = scale_x.clamp(min=1.0), scale_y.clamp(min=1.0)  # crops zoom in
    shrink = 0.55 + 0.45 * u(n)  # street views: the product's side as a fraction of the view
    scale_x, scale_y = sel(street, shrink, scale_x), sel(street, shrink, scale_y)
    max_deg = sel(street, 30.0, sel(real, 10.0, torch.full((n,), 8.0, device=dev)))
    angle = (u(n) * 2 - 1) * max_deg * math.pi / 180
    tx = sel(street, (u(n) * 2 - 1) * 0.2, (u(n) * 2 - 1) * (scale_x - 1))
    ty = sel(street, (u(n) * 2 - 1) * 0.2, (u(n) * 2 - 1) * (scale_y - 1))
    jitter = sel(street, 0.24, sel(real, 0.04, torch.full((n,), 0.06, device=dev)))
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=dev)
    placed = corners.view(1, 4, 2) * torch.stack([scale_x, scale_y], 1).view(n, 1, 2)
    placed = placed + (u(n, 4, 2) * 2 - 1) * (jitter * torch.minimum(scale_x, scale_y)).view(
        n, 1, 1
    )
    cos, sin = torch.cos(angle).view(n, 1), torch.sin(angle).view(n, 1)
    dst = torch.stack(
        [cos * placed[..., 0] - sin * placed[..., 1] + tx.view(n, 1),
         sin * placed[..., 0] + cos * placed[..., 1] + ty.view(n, 1)], dim=-1,
    )  # fmt: skip
    m = homography(dst, corners.expand(n, 4, 2))
    grid = _homography_grid(m, s)
    warped = F.grid_sample(torch.cat([xf, mask], 1), grid, "bilinear", "border", False)
    inside = F.grid_sample(torch.ones_like(mask), grid, "bilinear", "zeros", False)
    out, wmask = warped[:, :3], warped[:, 3:] * inside
    # background: clutter behind street views; the catalog's own background colour elsewhere
    clutter = random_backgrounds(n, s, generator, dev)
    alpha = F.avg_pool2d(wmask, 3, 1, 1, count_include_pad=False)  # soft edges
    out = torch.where(street.view(n, 1, 1, 1), alpha * out + (1 - alpha) * clutter, out)

    # occlusion (random erasing): an ellipse or box of random colour on half the street views
    lin = torch.linspace(0, 1, s, device=dev)
    yy, xx = lin.view(1, 1, s, 1), lin.view(1, 1, 1, s)
    cx, cy = 0.2 + 0.6 * u(n, 1, 1, 1), 0.2 + 0.6 * u(n, 1, 1, 1)
    rx, ry = 0.06 + 0.14 * u(n, 1, 1, 1), 0.06 + 0.14 * u(n, 1, 1, 1)
    dx, dy = (xx - cx) / rx, (yy - cy) / ry
    occ = torch.where(
        u(n, 1, 1, 1) < 0.5, dx * dx + dy * dy <= 1.0, (dx.abs() <= 1) & (dy.abs() <= 1)
    )
    occ = occ & (street & (u(n) < 0.5)).view(n, 1, 1, 1)
    out = torch.where(occ, u(n, 3, 1, 1), out)

    # light: brightness, colour cast, illumination gradient, contrast, saturation
    strong = street.view(n, 1, 1, 1)
    bright = torch.where(strong, 0.7 + 0.6 * u(n, 1, 1, 1), 0.85 + 0.3 * u(n, 1, 1, 1))
    cast = torch.where(strong, 0.88 + 0.24 * u(n, 3, 1, 1), 0.95 + 0.1 * u(n, 3, 1, 1))
    gdir = (u(n, 2, 1, 1) * 2 - 1) * (0.1 + 0.15 * strong.float())
    light = 1 + gdir[:, :1] * (xx - 0.5) + gdir[:, 1:] * (yy - 0.5)
    out = out * bright * cast * light
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * (0.8 + 0.4 * u(n, 1, 1, 1)) + mean
    grey = (0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3]).expand_as(out)
    out = (out - grey) * (0.8 + 0.4 * u(n, 1, 1, 1)) + grey
    # blur and sensor noise: every street view, a third of the others
    soft = street | (u(n) < 0.33)
    sigma = torch.where(street, 0.3 + 1.2 * u(n), 0.2 + 0.8 * u(n)) * soft
    out = torch.where(soft.view(n, 1, 1, 1), _gaussian_blur(out, sigma), out)
    noise_sd = torch.where(street, 0.008 + 0.027 * u(n), 0.01 * u(n)).view(n, 1, 1, 1)
    out = out + _randn(generator, dev, *out.shape) * noise_sd
    out = torch.where(clean.view(n, 1, 1, 1), xf, out)
    return out.clamp(0.0, 1.0)
