"""Inference: Embedder (trained runs -> embeddings), the batch embedding loop, submissions."""
