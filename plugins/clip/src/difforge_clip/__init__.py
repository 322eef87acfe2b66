"""difforge-clip: distil a text-to-image diffusion model's compositional knowledge into CLIP
(SDS-CLIP), with a Winoground / ARO / SugarCrepe-style benchmark on the shapes world and
retention checks."""

__version__ = "0.1.0"
