"""Learned metrics: LPIPS per image pair, FID and KID over sets of images.

Backbones come only from the weights registry (:mod:`bench.metrics.backbones`); when an entry is missing the
metric reports :func:`bench.metrics.backbones.missing_message` and computes nothing (no substitute weights,
no download).

Conventions
-----------
* Images are ``uint8`` ``H x W x 3`` RGB, as everywhere in the suite.
* LPIPS (``lpips`` package, v0.1 linear heads shipped in its wheel) takes float inputs in
  **[-1, 1]**; :func:`to_lpips_input` maps ``v -> v / 127.5 - 1``. Passing [0, 1] or [0, 255]
  inputs is the most common LPIPS mistake and silently changes every value.
* FID/KID features are Inception-v3 pool3 (2048-d) of the TF ``inception-2015-12-05`` graph, with
  torch-fidelity's layer definitions and TF1.x-exact bilinear resize to 299 x 299, then
  ``(v - 128) / 128``. The statistics (Fréchet distance, polynomial-kernel MMD) are torchmetrics'.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from bench.metrics.backbones import WeightsLocations, WeightsUnavailable, load_state, missing_message, resolve
from bench.metrics.moments import GRAM_FORM_MAX_N, FeatureMoments, frechet_distance_from_moments
from methods.checkpoint import load_state_strict

#: Registry entry of each LPIPS backbone.
LPIPS_BACKBONES = {"alex": "lpips-alex", "vgg": "lpips-vgg16"}
#: Registry entry of the FID/KID Inception.
INCEPTION_ENTRY = "fid-inception"

#: FID from fewer images than this is flagged indicative.
FID_RELIABLE_MIN_N = 10_000
#: Below this many images FID is essentially its small-sample bias: reports show it as "n/a (N < 50)".
FID_MIN_N = 50
FID_INDICATIVE_REASON = (
    "FID is biased upward at small N (the bias shrinks roughly as 1/N and depends on the method, so "
    "rankings can flip: Bińkowski et al. 2018, 'Demystifying MMD GANs'; Chong & Forsyth 2020, "
    "'Effectively Unbiased FID and Inception Score and where to find them'), and below 2049 images the "
    f"2048-d covariance is singular; values from fewer than {FID_RELIABLE_MIN_N:,} images are indicative "
    "only and comparable only at equal N (LaMa reports FID on 30,000 images)"
)
#: KID: at most this many images per subset (torch-fidelity's default), and this many subsets.
KID_MAX_SUBSET_SIZE = 1000
KID_SUBSETS = 100


def _as_batch(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    batch = np.asarray(images) if not isinstance(images, np.ndarray) else images
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (H, W, 3) or (N, H, W, 3), got {batch.dtype} {batch.shape}")
    return batch


def to_lpips_input(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N,) H x W x 3`` RGB -> float32 ``N x 3 x H x W`` in [-1, 1], the range LPIPS expects."""
    batch = _as_batch(images)
    tensor = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).to(torch.float32)
    return tensor / 127.5 - 1.0


def _same_size_groups(count: int, shapes: Sequence[tuple[int, ...]], batch_size: int) -> Iterable[list[int]]:
    """Indices in order, cut into runs of equal image shape, at most ``batch_size`` long."""
    group: list[int] = []
    for index in range(count):
        if group and (len(group) == batch_size or shapes[index] != shapes[group[0]]):
            yield group
            group = []
        group.append(index)
    if group:
        yield group


def lpips_unavailable_reason(net: str = "alex", locations: WeightsLocations | None = None) -> str | None:
    """``None`` when the LPIPS backbone ``net`` can be loaded, otherwise the text to show."""
    entry = LPIPS_BACKBONES.get(net)
    if entry is None:
        raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    return None if resolve(entry, locations) is not None else missing_message(entry)


class LPIPSMetric:
    """LPIPS v0.1 distance per image pair (lower = more similar).

    Parameters
    ----------
    net : {"alex", "vgg"}
        Backbone. AlexNet is the authors' recommended forward metric; LaMa's evaluation uses VGG.
    locations : WeightsLocations, optional
        Where to look for the backbone (default: from the environment).
    device : str
        Torch device.
    backbone_state : mapping, optional
        Torchvision-layout ``features.*`` state to use instead of the registry (tests).

    Raises
    ------
    WeightsUnavailable
        When the backbone is not provisioned; the message says to run ``relama-bench weights fetch``.
    """

    def __init__(self, net: str = "alex", *, locations: WeightsLocations | None = None, device: str = "cpu",
                 backbone_state: Mapping[str, torch.Tensor] | None = None) -> None:
        import lpips

        if net not in LPIPS_BACKBONES:
            raise ValueError(f"LPIPS net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
        source = "backbone_state argument"
        if backbone_state is None:
            backbone_state = load_state(LPIPS_BACKBONES[net], locations)
            source = f"weights entry '{LPIPS_BACKBONES[net]}'"
        self.net = net
        self.device = torch.device(device)
        # pnet_rand=True builds the torchvision backbone without downloading; pretrained=True loads the
        # v0.1 linear heads from the lpips wheel. The backbone state then replaces the random init.
        with warnings.catch_warnings():
            # torchvision's notice about its old 'pretrained' argument, which lpips still passes.
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        load_state_strict(self.model.net, self._slice_state(self.model.net, backbone_state), source)
        self.model.eval().to(self.device)

    @staticmethod
    def _slice_state(backbone: nn.Module, features_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map torchvision ``features.<i>.*`` keys onto lpips' ``slice<k>.<i>.*`` module names."""
        state: dict[str, torch.Tensor] = {}
        for key in backbone.state_dict():
            _slice, layer_index, param = key.split(".")
            source_key = f"features.{layer_index}.{param}"
            if source_key in features_state:
                state[key] = features_state[source_key]
        return state

    @torch.no_grad()
    def __call__(self, predictions: np.ndarray | Sequence[np.ndarray], targets: np.ndarray | Sequence[np.ndarray],
                 *, batch_size: int = 8) -> np.ndarray:
        """LPIPS of each ``predictions[i]`` against ``targets[i]``.

        Parameters
        ----------
        predictions, targets : uint8 array (N, H, W, 3) or sequence of uint8 (H, W, 3)
            Pairs must have equal shapes; different pairs may differ in size.
        batch_size : int
            Pairs per forward pass (consecutive pairs of equal size are batched).

        Returns
        -------
        numpy.ndarray
            float64 of shape (N,).
        """
        predictions = [predictions] if isinstance(predictions, np.ndarray) and predictions.ndim == 3 else predictions
        targets = [targets] if isinstance(targets, np.ndarray) and targets.ndim == 3 else targets
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
        shapes = [np.shape(image) for image in predictions]
        for index, (prediction, target) in enumerate(zip(predictions, targets)):
            if np.shape(prediction) != np.shape(target):
                raise ValueError(f"pair {index}: prediction {np.shape(prediction)} vs target {np.shape(target)}")
        distances = np.empty(len(predictions), dtype=np.float64)
        for group in _same_size_groups(len(predictions), shapes, batch_size):
            first = to_lpips_input(np.stack([predictions[i] for i in group])).to(self.device)
            second = to_lpips_input(np.stack([targets[i] for i in group])).to(self.device)
            distances[group] = self.model(first, second).flatten().double().cpu().numpy()
        return distances


class InceptionPool3(nn.Module):
    """Inception-v3 (TF ``inception-2015-12-05``) up to pool3: uint8 ``N x 3 x H x W`` -> ``N x 2048``.

    Built from torch-fidelity's blocks with its module names, so the registry state loads strictly.
    The input is resized to 299 x 299 with TF1.x-exact bilinear interpolation and mapped with
    ``(v - 128) / 128``, as the original TF FID code does.
    """

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import (
            BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE_1, InceptionE_2,
        )

        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE_1(1280)
        self.Mixed_7c = InceptionE_2(2048)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 N x 3 x H x W, got {images.dtype} {tuple(images.shape)}")
        x = interpolate_bilinear_2d_like_tensorflow1x(images.to(torch.float32), size=(299, 299), align_corners=False)
        # Channels-last: oneDNN runs Inception about 1.5x faster so; features move by < 1e-5.
        x = ((x - 128) / 128).contiguous(memory_format=torch.channels_last)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = nn.functional.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = nn.functional.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def load_inception(locations: WeightsLocations | None = None, device: str = "cpu") -> InceptionPool3:
    """:class:`InceptionPool3` with the registry's ``fid-inception`` state, loaded strictly.

    Raises
    ------
    WeightsUnavailable
        When the entry is not provisioned.
    """
    model = InceptionPool3()
    load_state_strict(model, load_state(INCEPTION_ENTRY, locations), f"weights entry '{INCEPTION_ENTRY}'")
    return model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)


def fid_unavailable_reason(locations: WeightsLocations | None = None) -> str | None:
    """``None`` when FID/KID can run, otherwise the text to show."""
    return None if resolve(INCEPTION_ENTRY, locations) is not None else missing_message(INCEPTION_ENTRY)


def _check_feature_sets(real_features: torch.Tensor, fake_features: torch.Tensor) -> int:
    if real_features.dim() != 2 or fake_features.dim() != 2 or real_features.shape[1] != fake_features.shape[1]:
        raise ValueError(f"feature sets must be N x D with equal D, got {tuple(real_features.shape)} "
                         f"and {tuple(fake_features.shape)}")
    if len(real_features) < 2 or len(fake_features) < 2:
        raise ValueError("FID and KID need at least 2 feature vectors on each side")
    return int(real_features.shape[1])


def frechet_distance(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """Fréchet distance between two ``N x D`` feature sets, in float64.

    ``|mu_r - mu_f|^2 + Tr(S_r) + Tr(S_f) - 2 Tr((S_r S_f)^(1/2))``. With centred feature matrices
    ``A`` (n x D) and ``B`` (m x D), the non-zero eigenvalues of ``S_r S_f`` are the squared singular
    values of ``A B^T / sqrt((n-1)(m-1))``, so the trace term is that matrix's nuclear norm. This is
    exact, agrees with torchmetrics' and scipy's ``sqrtm`` route to about 1e-6 relative (tested), and
    avoids a 2048 x 2048 matrix square root that takes 7-50 s here and is ill-conditioned whenever
    fewer than 2049 images make the covariances singular.
    """
    _check_feature_sets(real_features, fake_features)
    # Centred in place in float64 copies (the callers' tensors stay as they are): two N x D matrices
    # alive instead of four.
    real_centred = real_features.to(torch.float64, copy=True)
    fake_centred = fake_features.to(torch.float64, copy=True)
    real_mean, fake_mean = real_centred.mean(0), fake_centred.mean(0)
    real_centred.sub_(real_mean)
    fake_centred.sub_(fake_mean)
    n_real, n_fake = len(real_centred), len(fake_centred)
    trace_real = (real_centred ** 2).sum() / (n_real - 1)
    trace_fake = (fake_centred ** 2).sum() / (n_fake - 1)
    cross_trace = torch.linalg.svdvals(real_centred @ fake_centred.T).sum() / math.sqrt((n_real - 1) * (n_fake - 1))
    return float(((real_mean - fake_mean) ** 2).sum() + trace_real + trace_fake - 2 * cross_trace)


class FeatureSet:
    """``N x D`` feature rows, read by index, so that a set need not be in memory at once.

    FID of a large set streams its float64 moments in chunks of `MOMENT_CHUNK_ROWS` rows (`moments`),
    and KID reads only the rows of each subset (`rows`); the memory either needs does not grow with N.

    Parameters
    ----------
    count, dimension : int
        N and D.
    read : callable
        int64 row indices -> ``len(indices) x D`` float tensor of those rows, in that order (the cached
        Inception features are float32; every computation here is in float64).
    """

    def __init__(self, count: int, dimension: int, read: Callable[[np.ndarray], torch.Tensor]) -> None:
        self.count = count
        self.dimension = dimension
        self._read = read
        self._moments: FeatureMoments | None = None

    @classmethod
    def of(cls, features: torch.Tensor) -> FeatureSet:
        """A set of rows already in memory."""
        return cls(len(features), int(features.shape[1]), lambda indices: features[torch.from_numpy(indices)])

    def __len__(self) -> int:
        return self.count

    def rows(self, indices: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The rows ``indices``, in that order."""
        return self._read(np.asarray(indices, dtype=np.int64))

    def all(self) -> torch.Tensor:
        """Every row, ``N x D`` (only for sets known to be small)."""
        return self.rows(np.arange(self.count))

    def moments(self) -> FeatureMoments:
        """Count, float64 sum and sum of outer products of the rows, accumulated chunk by chunk."""
        if self._moments is None:
            moments = FeatureMoments(self.dimension)
            for first in range(0, self.count, MOMENT_CHUNK_ROWS):
                moments.update(self.rows(np.arange(first, min(first + MOMENT_CHUNK_ROWS, self.count))))
            self._moments = moments
        return self._moments


#: Rows per chunk when streaming moments (8 MB of float64 at D = 2048).
MOMENT_CHUNK_ROWS = 512


def frechet_distance_for(real_features: torch.Tensor, fake_features: torch.Tensor) -> tuple[float, str]:
    """`frechet_distance_of` two ``N x D`` feature sets in memory.

    Returns
    -------
    tuple
        (FID, the form used: ``"cross-Gram"`` or ``"covariance"``).
    """
    return frechet_distance_of(FeatureSet.of(real_features), FeatureSet.of(fake_features))


def frechet_distance_of(real: FeatureSet, fake: FeatureSet) -> tuple[float, str]:
    """FID of two feature sets by the cheaper exact form for their size (`bench.metrics.moments`): the
    cross-Gram form up to ``GRAM_FORM_MAX_N`` images (the rows in memory), the covariance form from
    moments streamed in chunks above.

    Returns
    -------
    tuple
        (FID, the form used: ``"cross-Gram"`` or ``"covariance"``).
    """
    if max(len(real), len(fake)) <= GRAM_FORM_MAX_N:
        return frechet_distance(real.all(), fake.all()), "cross-Gram"
    return frechet_distance_from_moments(real.moments(), fake.moments()), "covariance"


def kid_subset_size(n_real: int, n_fake: int) -> int:
    """KID subset size for the given set sizes: every image when fewer than 1000, else 1000."""
    return min(KID_MAX_SUBSET_SIZE, n_real, n_fake)


def kernel_inception_distance(real_features: torch.Tensor, fake_features: torch.Tensor, *,
                              seed: int = 0) -> tuple[float, float, int]:
    """`kernel_inception_distance_of` two ``N x D`` feature sets in memory."""
    _check_feature_sets(real_features, fake_features)
    return kernel_inception_distance_of(FeatureSet.of(real_features), FeatureSet.of(fake_features), seed=seed)


def kernel_inception_distance_of(real: FeatureSet, fake: FeatureSet, *, seed: int = 0) -> tuple[float, float, int]:
    """torchmetrics' KID (cubic polynomial kernel MMD², unbiased) over random subsets, reading only
    each subset's rows.

    The same computation as ``torchmetrics.image.kid.KernelInceptionDistance.compute`` on float64
    features, draw for draw (per subset a ``randperm`` of the real then of the fake rows, the first
    ``subset_size`` of each, torchmetrics' ``poly_mmd``), so the values are equal; only the rows a subset
    uses are read, so memory does not grow with N.

    Returns
    -------
    tuple
        (mean, standard deviation over subsets, subset size). The subset draw is seeded; when the
        subset is every image of both sets there is one subset and the deviation is 0.
    """
    from torchmetrics.image.kid import poly_mmd

    if real.dimension != fake.dimension or len(real) < 2 or len(fake) < 2:
        raise ValueError(f"KID needs two sets of at least 2 vectors of equal length, got {len(real)} x "
                         f"{real.dimension} and {len(fake)} x {fake.dimension}")
    subset_size = kid_subset_size(len(real), len(fake))
    # When a subset is the whole of both sets every draw gives the same value: one is enough (std 0).
    subsets = 1 if subset_size == max(len(real), len(fake)) else KID_SUBSETS
    scores = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for _ in range(subsets):
            real_rows = real.rows(torch.randperm(len(real))[:subset_size].numpy()).to(torch.float64)
            fake_rows = fake.rows(torch.randperm(len(fake))[:subset_size].numpy()).to(torch.float64)
            scores.append(poly_mmd(real_rows, fake_rows))
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(unbiased=False)), subset_size


@dataclass(frozen=True)
class SetMetrics:
    """FID and KID of one set of predictions against its originals.

    ``indicative`` is true when ``n`` < :data:`FID_RELIABLE_MIN_N`; ``note`` then says why.
    Values are NaN when fewer than two images are on either side.
    """

    fid: float
    kid_mean: float
    kid_std: float
    kid_subset_size: int
    n: int
    indicative: bool
    note: str
    #: Which exact form computed the FID's trace term (see `frechet_distance_for`).
    fid_trace_form: str = "cross-Gram"


class InceptionFeatures:
    """Inception-v3 pool3 features of uint8 RGB images, the input of FID and KID.

    Parameters
    ----------
    locations : WeightsLocations, optional
        Where to look for the Inception state.
    device : str
        Torch device.
    batch_size : int
        Images per Inception forward pass; 8 is the fastest on the CPU here (1.4x faster than 32, and
        about 300 MB lighter).
    inception : nn.Module, optional
        A ready feature extractor instead of the registry's (tests).

    Raises
    ------
    WeightsUnavailable
        When the Inception is not provisioned.
    """

    def __init__(self, *, locations: WeightsLocations | None = None, device: str = "cpu", batch_size: int = 8,
                 inception: nn.Module | None = None) -> None:
        self.device = torch.device(device)
        self.inception = (inception.to(self.device) if inception is not None
                          else load_inception(locations, str(self.device)))
        self.batch_size = batch_size

    @torch.no_grad()
    def extract(self, images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """Pool3 features (``N x 2048`` float32, CPU) of uint8 RGB images (sizes may differ).

        Every forward pass has exactly ``batch_size`` images (a short group is padded with black
        images whose features are dropped): oneDNN and cuDNN choose kernels by batch size (measured:
        features differ by ~1e-6 between batches of 10 and 16), and a feature must not depend on how
        a run happened to group its images (resumed, sharded across processes).
        """
        images = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else images
        shapes = [np.shape(image) for image in images]
        chunks = []
        for group in _same_size_groups(len(images), shapes, self.batch_size):
            stacked = _as_batch(np.stack([images[i] for i in group]))
            padded = np.zeros((self.batch_size, *stacked.shape[1:]), dtype=np.uint8)
            padded[:len(group)] = stacked
            batch = torch.from_numpy(padded).permute(0, 3, 1, 2)
            features = self.inception(batch.contiguous().to(self.device))[:len(group)]
            chunks.append(features.to(torch.float32).cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, InceptionPool3.num_features)


class FIDKID:
    """FID and KID between real and generated images, in torchmetrics' update/compute/reset style.

    The state is the features of each side (``N x 2048`` float32 rows); states of several processes
    or shards combine by concatenation (`merge`, torchmetrics' ``dist_reduce_fx="cat"``), and the
    result does not depend on how the images were split. It computes with `set_metrics_of`, as
    production scoring (`bench.run.scoring.set_metrics`) does on cached features read from disk.

    Parameters
    ----------
    extractor : InceptionFeatures, optional
        Needed only by `update`, which takes images; `update_features` takes features directly.
    """

    def __init__(self, extractor: InceptionFeatures | None = None) -> None:
        self.extractor = extractor
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._features: dict[bool, list[torch.Tensor]] = {True: [], False: []}

    def update(self, images: np.ndarray | Sequence[np.ndarray], real: bool) -> None:
        """Add uint8 ``H x W x 3`` RGB images to the real (originals) or generated set."""
        if self.extractor is None:
            raise ValueError("FIDKID.update takes images only with an extractor; pass features to update_features")
        self.update_features(self.extractor.extract(images), real)

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        """Add already extracted ``N x 2048`` features."""
        self._features[bool(real)].append(features.detach().to(torch.float32).cpu())

    def merge(self, other: "FIDKID") -> None:
        """Add the state of ``other`` (another process's or shard's images) to this one."""
        for real in (True, False):
            self._features[real].extend(other._features[real])

    def features(self, real: bool) -> torch.Tensor:
        """All features of one side, ``N x 2048``."""
        kept = self._features[bool(real)]
        return torch.cat(kept) if kept else torch.empty(0, InceptionPool3.num_features)

    def compute(self, *, seed: int = 0) -> SetMetrics:
        """FID and KID of everything added since the last :meth:`reset`. ``n`` is the smaller side."""
        return set_metrics_of(FeatureSet.of(self.features(True)), FeatureSet.of(self.features(False)), seed=seed)


def set_metrics_of(real: FeatureSet, fake: FeatureSet, *, seed: int = 0) -> SetMetrics:
    """FID and KID of a set of predictions' features against its originals'; ``n`` is the smaller side.

    The one FID/KID computation of the suite (`FIDKID` feeds it the features it holds, the report
    step the cached features of one method and case, read from disk as needed).
    """
    n = min(len(real), len(fake))
    indicative = n < FID_RELIABLE_MIN_N
    note = f"N = {n}: {FID_INDICATIVE_REASON}" if indicative else f"N = {n}"
    if n < 2:
        return SetMetrics(math.nan, math.nan, math.nan, 0, n, True, f"N = {n}: FID and KID need at least 2 images")
    kid_mean, kid_std, subset_size = kernel_inception_distance_of(real, fake, seed=seed)
    fid, form = frechet_distance_of(real, fake)
    return SetMetrics(fid, kid_mean, kid_std, subset_size, n, indicative, note, form)


__all__ = [
    "FIDKID", "FID_INDICATIVE_REASON", "FID_RELIABLE_MIN_N", "FeatureSet", "InceptionFeatures", "InceptionPool3",
    "LPIPSMetric", "SetMetrics", "WeightsUnavailable", "fid_unavailable_reason", "frechet_distance",
    "frechet_distance_for", "frechet_distance_of", "kernel_inception_distance", "kernel_inception_distance_of",
    "set_metrics_of",
    "kid_subset_size", "load_inception", "lpips_unavailable_reason", "to_lpips_input",
]
