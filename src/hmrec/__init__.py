"""hmrec: an end-to-end personalised fashion recommender for H&M-format retail data."""

__version__ = "0.1.0"
