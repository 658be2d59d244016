"""Sanity checks for saliency methods (Adebayo et al. 2018): model-parameter and data
randomization, compared with Spearman, SSIM and HOG similarity."""
