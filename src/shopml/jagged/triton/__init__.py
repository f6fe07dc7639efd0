"""Triton kernels of shopml.jagged, one module per op family. Imported lazily by ``ops``."""
