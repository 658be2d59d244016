"""Causal tests of what profiles single out: interventions on activations (ablation, patching, steering)."""
