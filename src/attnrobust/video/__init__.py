"""Video data: synthetic UCF-101-like clips, decoding (decord), frame features, YouTube-8M TFRecords.

* :mod:`.synthetic` - ``generate_ucf_like``: clips whose labels live in a few informative frames.
* :mod:`.decode` - ``list_clips`` (UCF-101 / Kinetics layouts), ``read_frames`` (decord).
* :mod:`.features` - ``extract_features`` (frozen backbone -> PCA -> YT8M quantisation) and the
  shard writer shared with YouTube-8M.
* :mod:`.feature_store` - ``read_feature_split``, ``quantize`` / ``dequantize`` / ``QUANT_STEP``:
  what training and attacks read, without the extraction code.
* :mod:`.yt8m` - frame-level TFRecords read/write without TensorFlow, ``convert_yt8m``.

Submodules are imported explicitly (nothing here), so listing clips never loads torch or decord.
"""
