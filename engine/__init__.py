"""The training loop, validation and experiment folders (used by tools/train.py and tools/test.py)."""
