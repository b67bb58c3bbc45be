"""Retrieval: the two-tower model, its training data and loop, and the FAISS article index."""
