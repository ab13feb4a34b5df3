"""Temporal modules inserted into 2D backbones: TSM shift, TAM / Conv. aggregation, non-local blocks."""

from actionbench.models.temporal.nonlocal_block import NonLocalBlock
from actionbench.models.temporal.tam import TemporalAggregation
from actionbench.models.temporal.tsm import ShiftConv2d, TemporalShift

__all__ = ["NonLocalBlock", "ShiftConv2d", "TemporalAggregation", "TemporalShift"]
