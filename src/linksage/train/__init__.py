"""Training of the LinkSage encoder (the ``train`` stage) and inference helpers (``linksage.train.infer``)."""
