"""Only for ci/gpu_check.sh on images whose numba-cuda predates their NumPy: numba-cuda <= 0.30
registers overloads for NumPy functions that NumPy 2.5 removed (np.row_stack first), so
importing numba.cuda fails there. Put the old names back as aliases before anything imports it."""
import numpy as _np

for _old, _new in (("row_stack", "vstack"), ("trapz", "trapezoid"), ("in1d", "isin"), ("product", "prod"),
                   ("cumproduct", "cumprod"), ("sometrue", "any"), ("alltrue", "all"), ("round_", "round")):
    if not hasattr(_np, _old) and hasattr(_np, _new):
        setattr(_np, _old, getattr(_np, _new))
