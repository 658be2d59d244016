"""Model descriptions any analysis accepts, and loading users ' own models."""
