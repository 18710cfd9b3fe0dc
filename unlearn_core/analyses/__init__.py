"""One module per audit of methods.md; each is a pure function `(models, data, config) -> result`.

Analyses never import streamlit and never modify the loaded models (anything that edits weights works on a
copy), so the dashboard can cache models once and run any audit on them in any order.
"""
