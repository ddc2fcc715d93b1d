"""The solve tests' systems, of matrices from ``problems`` (tests/problems.py), and the methods that
suit each structure."""

from __future__ import annotations

from problems import convection_dominated2d as convection_diffusion
from problems import ill_conditioned, shifted_poisson2d
from problems import poisson2d_array as poisson2d

__all__ = ["METHODS_FOR", "SYSTEMS", "convection_diffusion", "poisson2d"]

SYSTEMS = {
    "spd": (poisson2d(9), "spd"),
    "nonsymmetric": (convection_diffusion(9), "general"),
    "indefinite": (shifted_poisson2d(8), "symmetric"),
    "illcond": (ill_conditioned(7), "spd"),
}

# Which methods apply to which structure.
METHODS_FOR = {
    "spd": ["direct", "cg", "minres", "gmres", "bicgstab"],
    "symmetric": ["direct", "minres", "gmres"],
    "general": ["direct", "gmres", "bicgstab"],
}
