"""The zELO math core: pair graphs, Elo fitting (and its compiled kernels), the judge-ensemble
aggregation, simulated judges and cross-query calibration.

Pure functions over NumPy arrays: no Ray, no Arrow, no I/O, and no import from the rest of the
package (``tests/test_layering.py`` enforces it), so every stage above can call it anywhere.
"""
