"""Self-training (DAFormer/DACS) pieces around HRDA that the training step calls: EMA
teacher, pseudo-labels, ClassMix, strong augmentation, MIC, rare class sampling, ImageNet
feature distance, crop batches, and their settings (:mod:`.config`)."""
