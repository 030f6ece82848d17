"""The IBM Quantum job layer: ISA transpilation, Runtime submission, result cache, job ledger.

Not yet available in this release.
"""
