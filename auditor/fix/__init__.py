"""`auditor split`: a leak-free, Keras-ready re-split of the audited dataset."""
