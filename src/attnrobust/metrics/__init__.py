"""Scores: accuracy, GAP@k, mAP, AUROC, aggregation and claims."""
