"""Retrieval: Recall@K under each dataset's protocol, the test-time embeddings of images and
captions, and a run's evaluation results."""
