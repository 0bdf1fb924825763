"""Losses computed on embeddings (streamed in tiles: no B x B matrix)."""

from ._snnl import annealed_temperature, soft_nearest_neighbor_loss

__all__ = ["annealed_temperature", "soft_nearest_neighbor_loss"]
