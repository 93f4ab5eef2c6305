"""Memorization mitigations: train-time regularizers, fine-tuning and unlearning."""
