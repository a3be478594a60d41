"""fastbp's asv suite (see common.py). Numba compiles in the benchmark's own process, in setup,
never in a background worker beside the timed code (an instant-start worker compiling in a fresh
environment's empty cache would take a core from every contender measured meanwhile)."""
import os

os.environ.setdefault("FASTBP_BACKGROUND_COMPILE", "0")
