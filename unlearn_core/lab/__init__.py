"""The demo lab: tiny GPT-style models trained on a synthetic world of fictitious facts, unlearned with real
methods, plus planted controls whose truth is known. It is the app's default workspace and the tests' ground truth.
"""
