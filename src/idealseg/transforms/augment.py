"""Batched augmentation on tensors (CPU or CUDA), returning the spatial transform it applied.

Slices may have several channels (multi-parametric MRI): a spatial transform moves all channels of a
slice alike, so they stay on one grid; the intensity transforms treat each channel as a slice of its
own (`per_channel`), since a T2 and an ADC map react to a scanner's contrast differently.

Spatial transforms are 2x3 matrices `theta` in `torch.nn.functional.affine_grid` convention:
they map a location of the *output* view (normalised coordinates in [-1, 1]) to the location in
the *source* slice it samples. Knowing theta for two views of one slice, `correspondence` maps
each location of one view to the other, which is what the dense contrastive loss needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SpatialParams:
    """Ranges of the random spatial transform (rotation, rot90, flips, zoom, shift)."""
    rotation_deg: float = 20.0  # uniform in [-r, r]
    rot90: bool = True  # plus a random multiple of 90 degrees
    flip: bool = True  # horizontal and vertical, each with p = 0.5
    zoom: tuple[float, float] = (0.9, 1.1)  # > 1 zooms in (a crop of the slice)
    translate: float = 0.0  # fraction of the half-width, on top of the crop freedom
    p_rotation: float = 1.0  # probability that a slice is rotated at all (else angle 0)
    p_zoom: float = 1.0  # probability that a slice is zoomed at all (else zoom 1)


@dataclass
class PhotometricParams:
    """Ranges of the random intensity transforms, each applied with probability `p` per slice."""
    p: float = 0.8  # probability of each transform per slice
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.5)
    noise_std: float = 0.05
    blur_sigma: tuple[float, float] = (0.1, 1.2)


WEAK = SpatialParams()
CONTRASTIVE = SpatialParams(rotation_deg=15.0, rot90=False, flip=True, zoom=(0.8, 1.4), translate=0.1)


def _uniform(n: int, lo: float, hi: float, device) -> torch.Tensor:
    return torch.rand(n, device=device) * (hi - lo) + lo


def random_theta(n: int, params: SpatialParams, device="cpu") -> torch.Tensor:
    """[n, 2, 3] random affine matrices (output -> source coordinates)."""
    angle = _uniform(n, -params.rotation_deg, params.rotation_deg, device) * math.pi / 180
    angle = angle * (torch.rand(n, device=device) < params.p_rotation)
    if params.rot90:
        angle = angle + torch.randint(0, 4, (n,), device=device) * (math.pi / 2)
    zoom = torch.where(torch.rand(n, device=device) < params.p_zoom, _uniform(n, *params.zoom, device), 1.0)
    scale = 1.0 / zoom
    sx = scale * (torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0) if params.flip else 1.0)
    sy = scale * (torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0) if params.flip else 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    room = (1 - scale).clamp(min=0) + params.translate  # a zoomed-in view may move inside the slice
    tx = (torch.rand(n, device=device) * 2 - 1) * room
    ty = (torch.rand(n, device=device) * 2 - 1) * room
    theta = torch.stack(
        [torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1
    )
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample [B, C, H, W] through theta; locations outside the source read zero."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def warp_labels(labels: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour warp of integer labels [B, H, W]."""
    return warp(labels[:, None].float(), theta, mode="nearest")[:, 0].long()


def cell_centers(size: int, device="cpu") -> torch.Tensor:
    """[size*size, 2] normalised (x, y) centres of a size x size grid, row-major."""
    c = (torch.arange(size, device=device, dtype=torch.float32) * 2 + 1) / size - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], 1)


def correspondence(theta_q: torch.Tensor, theta_k: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each location of a size x size map of view q, the flat index of the same source point
    in view k, and whether it exists there (inside both views and inside the source slice).

    Returns (index [B, size*size] long, valid [B, size*size] bool).
    """
    p = cell_centers(size, theta_q.device)  # [L, 2]
    ones = torch.ones(p.shape[0], 1, device=p.device)
    ph = torch.cat([p, ones], 1)  # [L, 3]
    src = torch.einsum("bij,lj->bli", theta_q.float(), ph)  # [B, L, 2] source coordinates
    a_k, b_k = theta_k[:, :, :2].float(), theta_k[:, :, 2].float()
    inv_k = torch.linalg.inv_ex(a_k)[0]  # inv() checks for singular input, a wait for the device
    pk = torch.einsum("bij,blj->bli", inv_k, src - b_k[:, None, :])  # [B, L, 2]
    inside = (pk.abs() < 1).all(-1) & (src.abs() <= 1).all(-1)
    ij = ((pk + 1) / 2 * size).floor().long().clamp(0, size - 1)  # (col, row)
    return ij[..., 1] * size + ij[..., 0], inside


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-slice Gaussian blur of [B, 1, H, W] with sigma [B], via one grouped separable conv."""
    radius = 3
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    k = k / k.sum(1, keepdim=True)  # [B, 2r+1]
    b = x.shape[0]
    y = x.transpose(0, 1)  # [1, B, H, W]: slices as channels
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b)
    return y.transpose(0, 1)


def per_channel(transform: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`transform` of [B, 1, H, W] slices applied to [B, C, H, W] with each channel drawing its own
    parameters (as a slice of its own); one channel is passed as it is, drawing exactly as before."""
    b, c, h, w = x.shape
    if c == 1:
        return transform(x)
    return transform(x.reshape(b * c, 1, h, w)).reshape(b, c, h, w)


def photometric(x: torch.Tensor, params: PhotometricParams = PhotometricParams()) -> torch.Tensor:
    """Independent per-slice (and per-channel) brightness, contrast, gamma, blur and noise on
    [B, C, H, W] in [0, 1]."""
    return per_channel(lambda slices: _photometric(slices, params), x)


def _photometric(x: torch.Tensor, params: PhotometricParams) -> torch.Tensor:
    """`photometric` of one-channel slices [B, 1, H, W]."""
    b, dev = x.shape[0], x.device

    def on() -> torch.Tensor:
        return (torch.rand(b, 1, 1, 1, device=dev) < params.p).to(x.dtype)

    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    factor = _uniform(b, *params.contrast, dev).view(b, 1, 1, 1).to(x.dtype)
    x = x + on() * ((x - mean) * factor + mean - x)
    x = x + on() * _uniform(b, -params.brightness, params.brightness, dev).view(b, 1, 1, 1).to(x.dtype)
    x = x.clamp(0, 1)
    gamma = _uniform(b, *params.gamma, dev).view(b, 1, 1, 1).to(x.dtype)
    x = x + on() * (x.clamp_min(1e-6) ** gamma - x)
    x = x + on() * (_gaussian_blur(x, _uniform(b, *params.blur_sigma, dev)) - x)
    std = _uniform(b, 0, params.noise_std, dev).view(b, 1, 1, 1).to(x.dtype)
    x = x + on() * torch.randn_like(x) * std
    return x


def two_views(x: torch.Tensor, spatial: SpatialParams = CONTRASTIVE, photo: PhotometricParams = PhotometricParams()):
    """Two independently augmented views of each slice and the transforms that made them."""
    theta_q = random_theta(x.shape[0], spatial, x.device)
    theta_k = random_theta(x.shape[0], spatial, x.device)
    return photometric(warp(x, theta_q), photo), photometric(warp(x, theta_k), photo), theta_q, theta_k


def weak_augment(images: torch.Tensor, labels: torch.Tensor | None, params: SpatialParams = WEAK):
    """Fine-tuning augmentation: one random rotation/flip/zoom per slice, the same for its label."""
    theta = random_theta(images.shape[0], params, images.device)
    out = warp(images, theta)
    return out, (warp_labels(labels, theta) if labels is not None else None)


@dataclass
class NnUNetPhotometric:
    """nnU-Net v2's default intensity augmentation for 2D training, with its probabilities per slice
    (Isensee et al., nnU-Net; `nnUNetTrainer.get_training_transforms`). Noise is scaled by each slice's
    standard deviation, since nnU-Net's variances are meant for z-scored intensities and ours are in [0, 1]."""
    p_noise: float = 0.1
    noise_variance: tuple[float, float] = (0.0, 0.1)
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    p_brightness: float = 0.15
    brightness: tuple[float, float] = (0.75, 1.25)  # multiplicative
    p_contrast: float = 0.15
    contrast: tuple[float, float] = (0.75, 1.25)
    p_low_resolution: float = 0.25
    low_resolution: tuple[float, float] = (0.5, 1.0)  # downsampling factor
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)


# nnU-Net's 2D spatial augmentation: rotation over the full circle and scaling 0.7-1.4, each with
# p = 0.2, and mirroring of both axes (p = 0.5 each); no elastic deformation (off in nnU-Net v2).
NNUNET_SPATIAL = SpatialParams(rotation_deg=180.0, rot90=False, flip=True, zoom=(0.7, 1.4), p_rotation=0.2,
                               p_zoom=0.2)


def _chosen(b: int, p: float, device) -> torch.Tensor:
    return (torch.rand(b, 1, 1, 1, device=device) < p)


def _low_resolution(x: torch.Tensor, chosen: torch.Tensor, factors: tuple[float, float]) -> torch.Tensor:
    """Downsample the chosen slices (nearest) by a random factor and bring them back (bicubic), as a
    scanner with coarser pixels would have imaged them."""
    out = x.clone()
    h, w = x.shape[-2:]
    for i in torch.nonzero(chosen.flatten()).flatten().tolist():
        f = float(_uniform(1, *factors, x.device))
        small = F.interpolate(x[i : i + 1], size=(max(1, round(h * f)), max(1, round(w * f))), mode="nearest")
        out[i : i + 1] = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
    return out


def _gamma(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Gamma on each slice's own [min, max] range, keeping its mean and std (nnU-Net's retain_stats)."""
    dims = (1, 2, 3)
    mean, std = x.mean(dims, keepdim=True), x.std(dims, keepdim=True)
    lo, hi = x.amin(dims, keepdim=True), x.amax(dims, keepdim=True)
    y = ((x - lo) / (hi - lo).clamp_min(1e-7)).clamp(0, 1) ** gamma * (hi - lo) + lo
    return (y - y.mean(dims, keepdim=True)) / y.std(dims, keepdim=True).clamp_min(1e-7) * std + mean


def nnunet_photometric(x: torch.Tensor, params: NnUNetPhotometric = NnUNetPhotometric()) -> torch.Tensor:
    """nnU-Net's intensity transforms on [B, C, H, W], each slice and channel drawing its own (see
    NnUNetPhotometric; nnU-Net too transforms each channel on its own)."""
    return per_channel(lambda slices: _nnunet_photometric(slices, params), x)


def _nnunet_photometric(x: torch.Tensor, params: NnUNetPhotometric) -> torch.Tensor:
    """`nnunet_photometric` of one-channel slices [B, 1, H, W]."""
    b, dev, dims = x.shape[0], x.device, (1, 2, 3)
    std = x.std(dims, keepdim=True)
    noise = _uniform(b, *params.noise_variance, dev).sqrt().view(b, 1, 1, 1) * std
    x = torch.where(_chosen(b, params.p_noise, dev), x + torch.randn_like(x) * noise, x)
    x = torch.where(_chosen(b, params.p_blur, dev), _gaussian_blur(x, _uniform(b, *params.blur_sigma, dev)), x)
    x = torch.where(_chosen(b, params.p_brightness, dev), x * _uniform(b, *params.brightness, dev).view(b, 1, 1, 1), x)
    mean, lo, hi = x.mean(dims, keepdim=True), x.amin(dims, keepdim=True), x.amax(dims, keepdim=True)
    contrasted = ((x - mean) * _uniform(b, *params.contrast, dev).view(b, 1, 1, 1) + mean).clamp(lo, hi)
    x = torch.where(_chosen(b, params.p_contrast, dev), contrasted, x)
    x = _low_resolution(x, _chosen(b, params.p_low_resolution, dev), params.low_resolution)
    gamma = _uniform(b, *params.gamma, dev).view(b, 1, 1, 1)
    x = torch.where(_chosen(b, params.p_gamma_inverted, dev), -_gamma(-x, gamma), x)
    return torch.where(_chosen(b, params.p_gamma, dev), _gamma(x, _uniform(b, *params.gamma, dev).view(b, 1, 1, 1)), x)


def nnunet_augment(images: torch.Tensor, labels: torch.Tensor | None):
    """nnU-Net's 2D augmentation: its spatial transform (the same for image and label), then its
    intensity transforms on the image; for cross-centre robustness (another scanner's contrast,
    resolution and orientation)."""
    theta = random_theta(images.shape[0], NNUNET_SPATIAL, images.device)
    out = nnunet_photometric(warp(images, theta))
    return out, (warp_labels(labels, theta) if labels is not None else None)
