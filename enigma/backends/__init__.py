"""Printers of the IR: Metal Shading Language (msl), Enigma-dialect MLIR (mlir), portable JSON + signature
metadata (portable). Each is a function of an `ir.Kernel`; none mutates it."""
