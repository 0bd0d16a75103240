"""Self-training (DAFormer/DACS) pieces around HRDA: EMA teacher, pseudo-labels, ClassMix,
strong augmentation, rare class sampling, ImageNet feature distance, optimiser, schedule."""
