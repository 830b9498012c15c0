"""Tokenizers that run without torch: CLIP's BPE, ruCLIP's YouTokenToMe, Hugging Face's."""
