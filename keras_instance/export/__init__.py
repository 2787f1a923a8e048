"""Serving exports: raw-input SavedModels for TF Serving (encoders and top-k indexes) in its
folder layout, the raw-image checks they run, and Keras encoders giving the same embeddings."""
