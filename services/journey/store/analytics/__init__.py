"""Derived views over interactions: customer DNA, timeline, funnel, paths and reach — set-based SQL."""
