"""Analysis of finished runs: statistics over result rows and the regression check against a baseline."""
