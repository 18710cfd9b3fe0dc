"""Unlearning audit core: loads checkpoints and forget sets, runs audits, returns typed results.

Never imports streamlit; the dashboard (app.py, views/) and the CLI are thin layers over this package.
"""

__version__ = "0.1.0"
