"""The demo lab: tiny GPT-style models (one pretrained base, fine-tuned with and without the forget facts, as in
TOFU and MUSE) on a synthetic world of fictitious facts, unlearned with real methods, plus planted controls whose
truth is known. It is the app's default workspace and the tests' ground truth.
"""
