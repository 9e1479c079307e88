from __future__ import annotations

import pytest
import torch

from bench.metrics.learned import frechet_distance, frechet_distance_for
from bench.metrics.moments import GRAM_FORM_MAX_N, FeatureMoments, frechet_distance_from_moments


def _feature_sets(n_real: int, n_fake: int, dimension: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dimension, dimension, generator=generator, dtype=torch.float64) / dimension ** 0.5
    real = torch.randn(n_real, dimension, generator=generator, dtype=torch.float64).relu() @ mixing
    fake = (torch.randn(n_fake, dimension, generator=generator, dtype=torch.float64) * 1.3 + 0.2).relu() @ mixing
    return real.float(), fake.float()


def _moments(features: torch.Tensor) -> FeatureMoments:
    moments = FeatureMoments(features.shape[1])
    moments.update(features)
    return moments


@pytest.mark.parametrize(("n_real", "n_fake", "dimension"), [(400, 300, 32), (60, 50, 256), (3000, 2500, 64)])
def test_covariance_and_cross_gram_forms_agree(n_real, n_fake, dimension):
    # The middle case has fewer images than dimensions: both covariances are singular.
    real, fake = _feature_sets(n_real, n_fake, dimension)
    gram = frechet_distance(real, fake)
    covariance = frechet_distance_from_moments(_moments(real), _moments(fake))
    assert covariance == pytest.approx(gram, rel=1e-7)


def test_moments_merged_from_shards_equal_moments_of_everything():
    real, fake = _feature_sets(500, 400, 48, seed=1)
    merged = FeatureMoments(48)
    for part in real.split(77):
        merged.merge(_moments(part))
    whole = _moments(real)
    assert merged.count == whole.count == 500
    assert torch.allclose(merged.total, whole.total, rtol=1e-13, atol=0)
    assert torch.allclose(merged.covariance(), whole.covariance(), rtol=1e-10, atol=1e-13)
    assert frechet_distance_from_moments(merged, _moments(fake)) == pytest.approx(
        frechet_distance(real, fake), rel=1e-7)


def test_the_form_follows_the_number_of_images():
    real, fake = _feature_sets(20, 20, 16)
    assert frechet_distance_for(real, fake)[1] == "cross-Gram"
    real, fake = _feature_sets(GRAM_FORM_MAX_N + 1, 30, 16)
    value, form = frechet_distance_for(real, fake)
    assert form == "covariance" and value == pytest.approx(frechet_distance(real, fake), rel=1e-7)


def test_moments_refuse_wrong_shapes_and_too_few_vectors():
    moments = FeatureMoments(8)
    with pytest.raises(ValueError, match="N x 8"):
        moments.update(torch.zeros(3, 9))
    moments.update(torch.zeros(1, 8))
    with pytest.raises(ValueError, match="at least 2"):
        moments.covariance()
    with pytest.raises(ValueError, match="merge"):
        moments.merge(FeatureMoments(9))
