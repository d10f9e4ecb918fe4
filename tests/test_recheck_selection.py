"""Tests of the host's re-check (robench.evaluation): selection."""
