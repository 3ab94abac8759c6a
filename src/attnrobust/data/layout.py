"""Constants of the datasets' official on-disk layouts, shared by the parsers and the synthetic
generators that write the same layout (so neither imports the other; this module imports nothing
of the project)."""

GTSRB_NUM_CLASSES = 43
GTSRB_CSV_HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]
COCO_SPLIT_DIRS = {"train": "train2017", "test": "val2017"}  # prepared split -> COCO image folder
