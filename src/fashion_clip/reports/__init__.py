"""Reporting: the tables of one run (tables.py), the comparison of many (comparison.py) and the failure
gallery page (pages.py). The results file they read is `fashion_clip.records`."""
