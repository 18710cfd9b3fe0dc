"""Plot builders (plot_* -> plotly/altair figure) and the one shared theme; nothing here shows or saves a figure."""
