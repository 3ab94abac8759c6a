"""Foreground masks: which pixels of an image belong to annotated objects (1) and which are background (0)."""
