"""Reports: one report model read from a run directory, rendered as Markdown, HTML and figures."""
