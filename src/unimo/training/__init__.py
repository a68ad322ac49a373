"""The one training loop (PaddleNLP ``Trainer`` + the official UNIMO schedule) and the wrappers that change what a
training step computes (VILLA adversarial training); used by fine-tuning and pre-training alike."""
