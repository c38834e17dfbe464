"""The TinyNet benchmark's baseline: EfficientNet's compound scaling run backwards."""

import pytest

from searchkit.spaces.tinynet.bench import DEFAULTS, compound_genome, inverted_compound
from searchkit.spaces.tinynet import TinyNetSpace


def bench_space() -> TinyNetSpace:
    return TinyNetSpace({"reference_size": DEFAULTS["image_size"], "r": DEFAULTS["r"],
                         "d": DEFAULTS["d"], "w": DEFAULTS["w"]}, 10)


def test_phi_zero_is_b0():
    space = bench_space()
    assert compound_genome(space, 0.0) == space.genome(1.0, 1.0, 1.0) == space.base_genome()


@pytest.mark.parametrize("fraction", DEFAULTS["targets"])
def test_inverted_compound_lands_in_the_band(fraction):
    space = bench_space()
    target = fraction * space.flops_params(space.base_genome())[0]
    phi, genome = inverted_compound(space, target)
    flops = space.flops_params(genome)[0]
    assert DEFAULTS["band_low"] * target <= flops <= target  # equal FLOPs: inside the band
    # the largest such phi: a step further crosses the target
    assert space.flops_params(compound_genome(space, phi + 2e-4))[0] > target
    assert genome == compound_genome(space, phi) and phi < 0


def test_inverted_compound_follows_two_to_the_phi_at_224():
    # At ImageNet scale the rounding matters little: half of B0's FLOPs is phi ~ -1.
    space = TinyNetSpace({"reference_size": 224}, 1000)
    phi, genome = inverted_compound(space, 0.5 * space.flops_params(space.genome(1, 1, 1))[0])
    assert -1.3 < phi < -0.9
    assert (genome["d"], genome["w"]) == (round(1.2 ** phi, 4), round(1.1 ** phi, 4))


def test_unreachable_target_is_an_error():
    with pytest.raises(ValueError, match="compound scaling cannot get below"):
        inverted_compound(bench_space(), 1.0)
