"""Post-training analyses of a model's embeddings: geometry (angles on the hypersphere), the
open-set verification check, and the helpers that compute embeddings and run both after the test."""
