"""Synthetic mimics of the datasets, written in their official on-disk layouts (fetch@<dataset>)."""
